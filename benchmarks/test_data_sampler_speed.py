"""Batches/s of neat's BatchSampler against slicing the memmap by hand, on the same token file,
in the same run.

Three hand-written loaders: nanoGPT's get_batch (random starts, one slice per row, stacked;
on the first shard only), and two plain numpy ones that return inputs and targets as views of
one window array: a 2-D fancy index per shard a batch touches, or an index into a sliding-
window view per shard (whole rows copied; the fastest). neat's sampler does more (a shuffled
slot order that resumes exactly, windows that never cross a shard end, weighted parts,
contiguous tensors) and must not be slower for it than slicing by hand.

    python -m pytest benchmarks/test_data_sampler_speed.py --benchmark-only -s

Target (issue 3): ratio >= 0.95 against slicing by hand.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from neat.data import BatchSampler, Segment, Split

NUM_TOKENS = 16_000_000  # 32 MB of uint16 tokens, in one shard or several
ROUNDS = 5
BATCHES = 1000  # per round and loader


def hand_batches(data: np.ndarray, batch_size: int, block_size: int, n: int) -> None:
    """nanoGPT's get_batch on an open memmap."""
    for _ in range(n):
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([torch.from_numpy(data[i : i + block_size].astype(np.int64)) for i in ix])
        y = torch.stack(
            [torch.from_numpy(data[i + 1 : i + 1 + block_size].astype(np.int64)) for i in ix]
        )
        assert x.shape == y.shape


def vectorised_batches(
    shards: list[np.ndarray],
    weights: list[float],
    batch_size: int,
    block_size: int,
    n: int,
    windows_view: bool = False,
) -> None:
    """Random (shard, start) rows, one numpy indexing per shard touched, inputs and targets as
    views of the windows (not contiguous). `windows_view`: index a sliding-window view (whole
    rows copied) instead of gathering every token with a 2-D fancy index."""
    rng = np.random.default_rng(0)
    columns = np.arange(block_size + 1)
    p = np.asarray(weights) / sum(weights)
    limits = np.array([len(s) - block_size for s in shards])
    views = [sliding_window_view(np.asarray(s), block_size + 1) for s in shards]

    def rows_of(k: int, starts: np.ndarray) -> np.ndarray:
        return views[k][starts] if windows_view else shards[k][starts[:, None] + columns]

    for _ in range(n):
        if len(shards) == 1:
            windows = rows_of(0, rng.integers(0, limits[0], size=batch_size))
        else:
            which = rng.choice(len(shards), size=batch_size, p=p)
            ix = rng.integers(0, limits[which])
            windows = np.empty((batch_size, block_size + 1), dtype=shards[0].dtype)
            for k in np.unique(which):
                rows = np.flatnonzero(which == k)
                windows[rows] = rows_of(int(k), ix[rows])
        tensor = torch.from_numpy(windows.astype(np.int64))
        x, y = tensor[:, :-1], tensor[:, 1:]
        assert x.shape == y.shape


def neat_batches(sampler: BatchSampler, n: int) -> None:
    for _ in range(n):
        batch = sampler.next_batch()
        assert batch.input_ids.shape == batch.targets.shape


def _shards(folder: Path, count: int) -> list[np.ndarray]:
    """NUM_TOKENS random tokens in `count` shard files, opened as memmaps."""
    tokens = np.random.default_rng(0).integers(0, 50_000, NUM_TOKENS, dtype=np.uint16)
    shards = []
    for i, piece in enumerate(np.array_split(tokens, count)):
        path = folder / f"{count}-shard_{i:05d}.bin"
        piece.tofile(path)
        shards.append(np.memmap(path, dtype=np.uint16, mode="r"))
    return shards


def _layout(folder: Path, layout: str) -> tuple[Any, list[np.ndarray], list[float]]:
    """neat's input, the shard arrays and the weights the hand-written loader uses."""
    if layout == "one shard":
        shards = _shards(folder, 1)
        return shards[0], shards, [1.0]
    if layout == "eight shards":
        shards = _shards(folder, 8)
        split = Split(tuple(Segment(s, 0, len(s)) for s in shards))
        return split, shards, [len(s) for s in shards]
    shards = _shards(folder, 2)  # two parts, one shard each, mixed 3:1
    parts = [(Split((Segment(s, 0, len(s)),)), w) for s, w in zip(shards, [3.0, 1.0], strict=True)]
    return parts, shards, [3.0, 1.0]


@pytest.mark.benchmark(group="data-sampler")
@pytest.mark.parametrize("layout", ["one shard", "eight shards", "mixture 3:1"])
@pytest.mark.parametrize(("batch_size", "block_size"), [(12, 64), (64, 256), (16, 1024)])
def test_sampler_vs_hand_sliced_memmap(
    benchmark: Any, tmp_path: Path, layout: str, batch_size: int, block_size: int
) -> None:
    data, shards, weights = _layout(tmp_path, layout)
    sampler = BatchSampler(data, batch_size, block_size, seed=0)
    torch.manual_seed(0)
    loaders = {
        "nanogpt": lambda: hand_batches(shards[0], batch_size, block_size, BATCHES),
        "fancy": lambda: vectorised_batches(shards, weights, batch_size, block_size, BATCHES),
        "windows": lambda: vectorised_batches(
            shards, weights, batch_size, block_size, BATCHES, windows_view=True
        ),
        "neat": lambda: neat_batches(sampler, BATCHES),
    }
    times: dict[str, list[float]] = {name: [] for name in loaders}

    def interleaved_round() -> None:
        for name, load in loaders.items():
            start = time.perf_counter()
            load()
            times[name].append(time.perf_counter() - start)

    interleaved_round()  # warm-up: page cache, allocator, the first epoch's order
    times = {name: [] for name in loaders}
    benchmark.pedantic(interleaved_round, rounds=ROUNDS, iterations=1)
    rate = {name: BATCHES / statistics.median(t) for name, t in times.items()}
    ratio = {name: rate["neat"] / rate[name] for name in ("nanogpt", "fancy", "windows")}
    benchmark.extra_info.update(
        {
            "layout": layout,
            "batch_size": batch_size,
            "block_size": block_size,
            **{f"{name}_batches_per_s": value for name, value in rate.items()},
            **{f"ratio_neat_over_{name}": value for name, value in ratio.items()},
        }
    )
    print(
        f"\n{layout}, batch {batch_size} x {block_size}: BatchSampler {rate['neat']:,.0f} "
        f"batches/s; by hand: nanoGPT's get_batch {rate['nanogpt']:,.0f} "
        f"(ratio {ratio['nanogpt']:.2f}), one fancy index {rate['fancy']:,.0f} "
        f"({ratio['fancy']:.2f}), window view {rate['windows']:,.0f} ({ratio['windows']:.2f})"
    )
    # The target is against slicing by hand (nanoGPT); the fancy-index loader, which returns
    # views, is held to it too. The window-view loader is reported only: it returns views
    # where neat returns contiguous tensors (a model may call .view(-1) on them).
    for name in ("nanogpt", "fancy"):
        assert ratio[name] >= 0.95, f"the sampler runs at {ratio[name]:.2f} of the {name} loader"
