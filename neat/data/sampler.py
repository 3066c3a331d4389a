"""Random training batches that resume exactly, and fixed evaluation batches.

Both read splits made of segments (shard memmap, start, end); a window never crosses the end
of a segment, so it never spans two shards or the train/validation cut. Where the data has
loss masks (prompt/response), targets that are not training targets are IGNORE_INDEX (-100),
which the model's loss skips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neat.data.pipeline import Split, weighted_splits
from neat.errors import DataError
from neat.interfaces import Batch

IGNORE_INDEX = -100  # the target value the model's cross-entropy ignores
_MIX_STREAM = 0x6D6978  # seeds the row -> part assignment apart from the slot orders


def _inputs_targets(
    windows: np.ndarray, masks: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous int64 inputs and next-token targets of (rows, block_size + 1) windows."""
    x = windows[:, :-1].astype(np.int64)  # astype of a strided view: one contiguous copy
    y = windows[:, 1:].astype(np.int64)
    if masks is not None:
        y[masks[:, 1:] == 0] = IGNORE_INDEX  # a target the mask does not train is ignored
    return torch.from_numpy(x), torch.from_numpy(y)


def _window_view(array: np.ndarray | None, width: int) -> np.ndarray | None:
    """Every window of `width` tokens of `array`, as a read-only view (nothing is read):
    `view[starts]` then copies whole rows, several times faster than gathering each token."""
    if array is None or len(array) < width:
        return None
    return np.lib.stride_tricks.sliding_window_view(np.asarray(array), width)


class _Reader:
    """Reads windows from the distinct shard arrays behind a set of segments.

    Rows are addressed as (array index, start in that array), so one batch costs one indexing
    of a window view per shard it touches (one in all for a single shard).
    """

    def __init__(self, splits: Sequence[Split], block_size: int) -> None:
        self.tokens: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []
        self.index_of: dict[int, int] = {}  # id(shard array) -> its index
        for split in splits:
            for segment in split.segments:
                if id(segment.tokens) not in self.index_of:
                    self.index_of[id(segment.tokens)] = len(self.tokens)
                    self.tokens.append(segment.tokens)
                    self.masks.append(segment.mask)
        self.has_mask = any(m is not None for m in self.masks)
        self.dtype = np.result_type(*self.tokens) if self.tokens else np.dtype(np.uint16)
        self.width = block_size + 1
        self.windows = [_window_view(t, self.width) for t in self.tokens]
        self.mask_windows = [_window_view(m, self.width) for m in self.masks]

    def read(self, arrays: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(windows, masks) of the rows at (arrays[i], starts[i])."""
        if len(self.tokens) == 1 or arrays.min() == arrays.max():
            return self._read_one(int(arrays[0]), starts)
        windows = np.empty((len(starts), self.width), dtype=self.dtype)
        masks = np.empty(windows.shape, dtype=np.uint8) if self.has_mask else None
        order = np.argsort(arrays, kind="stable")
        cuts = np.flatnonzero(np.diff(arrays[order])) + 1
        for rows in np.split(order, cuts):
            part_windows, part_masks = self._read_one(int(arrays[rows[0]]), starts[rows])
            windows[rows] = part_windows
            if masks is not None and part_masks is not None:
                masks[rows] = part_masks
        return windows, masks

    def _read_one(self, array: int, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        view = self.windows[array]
        if view is None:  # pragma: no cover - a shard shorter than a window has no slots
            raise IndexError(f"shard {array} is shorter than one window")
        windows = view[starts]
        if not self.has_mask:
            return windows, None
        mask = self.mask_windows[array]
        return windows, (np.ones(windows.shape, np.uint8) if mask is None else mask[starts])


class _Windows:
    """The block_size slots of one split's segments, numbered across the segments."""

    def __init__(self, split: Split, block_size: int, reader: _Reader) -> None:
        self.split = split
        self.segments = split.segments
        self.block_size = block_size
        counts = [max(0, (len(s) - 1) // block_size) for s in self.segments]
        self.first_slot = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self.num_slots = int(self.first_slot[-1])
        self.last_start = np.array([len(s) - 1 - block_size for s in self.segments], np.int64)
        self.base = np.array([s.start for s in self.segments], np.int64)
        self.array = np.array([reader.index_of[id(s.tokens)] for s in self.segments], np.int64)

    def locate(self, slots: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard array index, start in it) of each slot's window, `offsets` into its slot."""
        if len(self.segments) == 1:
            seg = np.zeros(len(slots), dtype=np.int64)
        else:
            seg = np.searchsorted(self.first_slot, slots, side="right") - 1
        local = (slots - self.first_slot[seg]) * self.block_size + offsets
        return self.array[seg], self.base[seg] + np.minimum(local, self.last_start[seg])


@dataclass(frozen=True)
class _Plan:
    """One epoch: each row's shard array and start."""

    epoch: int
    array: np.ndarray
    start: np.ndarray


def _shares(total: int, weights: Sequence[float]) -> np.ndarray:
    """`total` rows split by weight, by largest remainder (so they sum to `total`)."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    left = total - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:left]] += 1
    result: np.ndarray = counts
    return result


class BatchSampler:
    """Shuffled windows, one per `block_size` slot of the split, one pass per epoch.

    Each window starts at a random offset inside its slot, so sequences begin anywhere in
    the text (as nanoGPT's uniformly random offsets do, which matters on small corpora),
    while every slot is still visited once per epoch. Each epoch's order and offsets are a
    pure function of (seed, epoch), so the whole position is two integers, epoch and cursor:
    resuming from them replays exactly the batches an unbroken run would have drawn.

    `data` is a token array, a `Split`, or weighted parts `[(split, weight), ...]`. With
    several parts an epoch has as many rows as all parts have slots; part i supplies
    weight_i / sum(weights) of them, through its own shuffled slots (starting another pass
    over them, freshly shuffled, when its share exceeds its slots).

    `batch_size` is the global batch. With `world_size` > 1 every process follows the same
    plan and reads only its own `batch_size / world_size` rows of each batch (rank r takes
    rows [r * b, (r + 1) * b)), so together they train on exactly the rows one process would,
    and the position (counted in global batches) is the same on every rank and for any
    world size that divides the batch.
    """

    def __init__(
        self,
        data: np.ndarray | Split | Sequence[tuple[Split | np.ndarray, float]],
        batch_size: int,
        block_size: int,
        seed: int,
        device: torch.device | str = "cpu",
        name: str = "train",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size <= 0 or block_size <= 0:
            raise ValueError(
                f"batch_size and block_size must be positive, got {batch_size}, {block_size}"
            )
        if not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(
                f"rank {rank} of world size {world_size} cannot take an even share of "
                f"batch_size {batch_size}"
            )
        parts = weighted_splits(data, name)
        if not parts:
            raise DataError(f"the {name} data has no parts")
        weights = [w for _, w in parts]
        if not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"part weights must be positive, got {weights}")
        self.batch_size = batch_size
        self.rank_rows = batch_size // world_size
        self.rank = rank
        self.block_size = block_size
        self.seed = seed
        self.device = torch.device(device)
        self.weights = weights
        self.reader = _Reader([split for split, _ in parts], block_size)
        self.parts = [_Windows(split, block_size, self.reader) for split, _ in parts]
        self.has_mask = self.reader.has_mask
        self.num_windows = sum(p.num_slots for p in self.parts)
        if self.num_windows < batch_size:
            tokens = sum(len(split) for split, _ in parts)
            segments = sum(len(p.segments) for p in self.parts)
            where = (
                f" in {segments} segments (a window never crosses a shard end)"
                if segments > 1
                else ""
            )
            raise DataError(
                f"the {name} split has {tokens:,} tokens{where}, but one batch needs "
                f"batch_size * block_size + 1 = {batch_size} * {block_size} + 1 = "
                f"{batch_size * block_size + 1:,} tokens; lower training.batch_size or "
                "model.block_size, or add data"
            )
        for part in self.parts:
            if part.num_slots == 0:
                raise DataError(
                    f"the {part.split.name} has {len(part.split):,} tokens, fewer than one "
                    f"window of block_size + 1 = {block_size + 1:,}; lower model.block_size, "
                    "add data to it, or remove it from data.sources"
                )
        self.batches_per_epoch = self.num_windows // batch_size
        self._epoch = 0
        self._cursor = 0
        self._plan: _Plan | None = None

    @property
    def epoch(self) -> int:
        return self._epoch

    def _slot_rng(self, part: int, pass_: int) -> np.random.Generator:
        # One part, first pass: the draws of the single-source sampler of earlier versions.
        key = [self.seed, self._epoch] + ([part, pass_] if part or pass_ else [])
        return np.random.default_rng(key)

    def _slots(self, part: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `count` (slot, offset) draws of `part` this epoch."""
        n = self.parts[part].num_slots
        slots, offsets = [], []
        for pass_ in range(-(-count // n)):
            rng = self._slot_rng(part, pass_)
            offset = rng.integers(0, self.block_size, size=n)
            order = rng.permutation(n)
            slots.append(order)
            offsets.append(offset[order])
        return np.concatenate(slots)[:count], np.concatenate(offsets)[:count]

    def _epoch_plan(self) -> _Plan:
        if self._plan is not None and self._plan.epoch == self._epoch:
            return self._plan
        rows = self.batches_per_epoch * self.batch_size
        if len(self.parts) == 1:
            array, start = self.parts[0].locate(*self._slots(0, rows))
        else:
            counts = _shares(rows, self.weights)
            mix = np.random.default_rng([self.seed, self._epoch, _MIX_STREAM])
            part = mix.permutation(np.repeat(np.arange(len(self.parts)), counts))
            array = np.empty(rows, dtype=np.int64)
            start = np.empty(rows, dtype=np.int64)
            for i, count in enumerate(counts):
                if count:
                    mine = np.flatnonzero(part == i)
                    array[mine], start[mine] = self.parts[i].locate(*self._slots(i, int(count)))
        self._plan = _Plan(self._epoch, array, start)
        return self._plan

    def next_batch(self) -> Batch:
        plan = self._epoch_plan()
        first = self._cursor * self.batch_size + self.rank * self.rank_rows
        rows = slice(first, first + self.rank_rows)
        windows, masks = self.reader.read(plan.array[rows], plan.start[rows])
        x, y = _inputs_targets(windows, masks)
        self._cursor += 1
        if self._cursor == self.batches_per_epoch:
            self._epoch, self._cursor = self._epoch + 1, 0
        return Batch(input_ids=self._to_device(x), targets=self._to_device(y))

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return tensor
        if self.device.type == "cuda":
            # Pinned memory lets the copy overlap with the previous step's compute.
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "cursor": self._cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, cursor = state.get("epoch"), state.get("cursor")
        if not isinstance(epoch, int) or not isinstance(cursor, int) or epoch < 0 or cursor < 0:
            raise DataError(
                f"invalid sampler state {state!r}: expected non-negative epoch and cursor"
            )
        if cursor > self.batches_per_epoch:
            raise DataError(
                f"sampler state has cursor {cursor}, but an epoch here has only "
                f"{self.batches_per_epoch} batches; did the data, batch size or block size change "
                "since the checkpoint?"
            )
        self._epoch, self._cursor = epoch, cursor
        if self._cursor == self.batches_per_epoch:
            self._epoch, self._cursor = self._epoch + 1, 0


def _even_shares(total: int, capacities: Sequence[int]) -> list[int]:
    """`total` split as evenly as the capacities allow (a short part's rest goes to others)."""
    quota = [0] * len(capacities)
    remaining = total
    open_parts = [i for i, c in enumerate(capacities) if c > 0]
    while remaining > 0 and open_parts:
        each = max(1, remaining // len(open_parts))
        for i in list(open_parts):
            give = min(each, capacities[i] - quota[i], remaining)
            quota[i] += give
            remaining -= give
            if quota[i] == capacities[i]:
                open_parts.remove(i)
            if remaining == 0:
                break
    return quota


def eval_batches(
    data: np.ndarray | Split | Sequence[Split | np.ndarray],
    batch_size: int,
    block_size: int,
    num_batches: int,
    name: str = "val",
) -> list[Batch]:
    """The same batches every call: consecutive windows from the start of each split.

    With several splits (one per part of a mixture) the windows are shared evenly between
    them, each split's in order, the parts in order. A short split gives fewer batches, or
    one smaller batch, rather than an error, so a small corpus can still be evaluated; only
    data without a single window fails. Masked targets are IGNORE_INDEX, as in training.
    """
    if batch_size <= 0 or block_size <= 0 or num_batches <= 0:
        raise ValueError("batch_size, block_size and num_batches must be positive")
    if isinstance(data, np.ndarray | Split):
        data = [data]
    splits = [
        s if isinstance(s, Split) else Split.from_array(s, name=f"{name} split") for s in data
    ]
    reader = _Reader(splits, block_size)
    views = [_Windows(s, block_size, reader) for s in splits]
    capacities = [v.num_slots for v in views]
    if sum(capacities) == 0:
        tokens = sum(len(s) for s in splits)
        raise DataError(
            f"the {name} split has {tokens:,} tokens, fewer than one window of "
            f"block_size + 1 = {block_size + 1:,} tokens; raise data.val_fraction, "
            "lower model.block_size, or add data"
        )
    windows = min(sum(capacities), batch_size * num_batches)
    quotas = _even_shares(windows, capacities)
    arrays, starts = [], []
    for view, quota in zip(views, quotas, strict=True):
        if quota:  # the first `quota` windows of the split, in order, at offset 0 of each slot
            slots = np.arange(quota, dtype=np.int64)
            array, start = view.locate(slots, np.zeros(quota, dtype=np.int64))
            arrays.append(array)
            starts.append(start)
    sizes = [windows] if windows < batch_size else [batch_size] * (windows // batch_size)
    used = sum(sizes)
    tokens_all, masks_all = reader.read(
        np.concatenate(arrays)[:used], np.concatenate(starts)[:used]
    )
    batches = []
    at = 0
    for size in sizes:
        masks = None if masks_all is None else masks_all[at : at + size]
        x, y = _inputs_targets(tokens_all[at : at + size], masks)
        batches.append(Batch(input_ids=x, targets=y))
        at += size
    return batches
