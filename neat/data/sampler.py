"""Random training batches that resume exactly, and fixed evaluation batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neat.errors import DataError
from neat.interfaces import Batch


def _gather(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[np.ndarray, ...]:
    """Inputs and next-token targets for windows at `starts`, in one fancy index."""
    windows = np.asarray(tokens[starts[:, None] + np.arange(block_size + 1)], dtype=np.int64)
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


class BatchSampler:
    """Shuffled windows, one per `block_size` slot of the split, one pass per epoch.

    Each window starts at a random offset inside its slot, so sequences begin anywhere in
    the text (as nanoGPT's uniformly random offsets do, which matters on small corpora),
    while every slot is still visited once per epoch. Each epoch's order and offsets are a
    pure function of (seed, epoch), so the whole position is two integers, epoch and cursor:
    resuming from them replays exactly the batches an unbroken run would have drawn.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        block_size: int,
        seed: int,
        device: torch.device | str = "cpu",
        name: str = "train",
    ) -> None:
        if batch_size <= 0 or block_size <= 0:
            raise ValueError(
                f"batch_size and block_size must be positive, got {batch_size}, {block_size}"
            )
        self.tokens = tokens
        self.batch_size = batch_size
        self.block_size = block_size
        self.seed = seed
        self.device = torch.device(device)
        self.num_windows = (len(tokens) - 1) // block_size
        if self.num_windows < batch_size:
            raise DataError(
                f"the {name} split has {len(tokens):,} tokens, but one batch needs "
                f"batch_size * block_size + 1 = {batch_size} * {block_size} + 1 = "
                f"{batch_size * block_size + 1:,} tokens; lower training.batch_size or "
                "model.block_size, or add data"
            )
        self.last_start = len(tokens) - 1 - block_size
        self.batches_per_epoch = self.num_windows // batch_size
        self._epoch = 0
        self._cursor = 0
        self._order: tuple[int, np.ndarray, np.ndarray] | None = None  # epoch, offsets, order

    @property
    def epoch(self) -> int:
        return self._epoch

    def _epoch_order(self) -> tuple[np.ndarray, np.ndarray]:
        if self._order is None or self._order[0] != self._epoch:
            rng = np.random.default_rng([self.seed, self._epoch])
            offsets = rng.integers(0, self.block_size, size=self.num_windows)
            self._order = (self._epoch, offsets, rng.permutation(self.num_windows))
        return self._order[1], self._order[2]

    def next_batch(self) -> Batch:
        offsets, perm = self._epoch_order()
        b, size = self._cursor, self.batch_size
        slots = perm[b * size : (b + 1) * size]
        starts = np.minimum(slots * self.block_size + offsets[slots], self.last_start)
        x, y = _gather(self.tokens, starts, self.block_size)
        self._cursor += 1
        if self._cursor == self.batches_per_epoch:
            self._epoch, self._cursor = self._epoch + 1, 0
        return Batch(input_ids=self._to_device(x), targets=self._to_device(y))

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
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


def eval_batches(
    tokens: np.ndarray, batch_size: int, block_size: int, num_batches: int, name: str = "val"
) -> list[Batch]:
    """The same batches every call: consecutive windows from the start of the split.

    A short split gives fewer batches, or one smaller batch, rather than an error, so a
    small corpus can still be evaluated; only a split shorter than one window fails.
    """
    if batch_size <= 0 or block_size <= 0 or num_batches <= 0:
        raise ValueError("batch_size, block_size and num_batches must be positive")
    fit = (len(tokens) - 1) // block_size
    if fit == 0:
        raise DataError(
            f"the {name} split has {len(tokens):,} tokens, fewer than one window of "
            f"block_size + 1 = {block_size + 1:,} tokens; raise data.val_fraction, "
            "lower model.block_size, or add data"
        )
    windows = min(fit, batch_size * num_batches)
    starts = np.arange(windows) * block_size
    if windows < batch_size:
        groups = [starts]
    else:
        groups = [
            starts[i : i + batch_size] for i in range(0, windows - batch_size + 1, batch_size)
        ]
    batches = []
    for group in groups:
        x, y = _gather(tokens, group, block_size)
        batches.append(Batch(input_ids=torch.from_numpy(x), targets=torch.from_numpy(y)))
    return batches
