"""BatchSampler and eval_batches: determinism, exact resume, epochs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neat.data import IGNORE_INDEX, BatchSampler, Segment, Split, eval_batches
from neat.errors import DataError
from neat.interfaces import Batch

TOKENS = np.arange(1_000, dtype=np.uint16)  # token value == position: starts are readable


def _draw(sampler: BatchSampler, k: int) -> list[Batch]:
    return [sampler.next_batch() for _ in range(k)]


def _same(a: list[Batch], b: list[Batch]) -> bool:
    return all(
        torch.equal(x.input_ids, y.input_ids) and torch.equal(x.targets, y.targets)
        for x, y in zip(a, b, strict=True)
    )


def test_batch_shapes_dtypes_and_targets() -> None:
    batch = BatchSampler(TOKENS, batch_size=4, block_size=8, seed=0).next_batch()
    assert batch.input_ids.shape == batch.targets.shape == (4, 8)
    assert batch.input_ids.dtype == batch.targets.dtype == torch.int64
    assert batch.input_ids.is_contiguous() and batch.targets.is_contiguous()
    assert torch.equal(batch.targets, batch.input_ids + 1)  # next token of a running count
    assert torch.equal(batch.input_ids[:, 1:], batch.input_ids[:, :-1] + 1)  # contiguous windows


def test_same_seed_same_batches_other_seed_differs() -> None:
    a = _draw(BatchSampler(TOKENS, 4, 8, seed=1), 5)
    b = _draw(BatchSampler(TOKENS, 4, 8, seed=1), 5)
    c = _draw(BatchSampler(TOKENS, 4, 8, seed=2), 5)
    assert _same(a, b)
    assert not _same(a, c)


def test_epoch_covers_each_window_once() -> None:
    sampler = BatchSampler(TOKENS, batch_size=4, block_size=10, seed=3)
    n = (len(TOKENS) - 1) // 10  # 99 slots of 10 tokens
    assert sampler.batches_per_epoch == n // 4 == 24
    starts = torch.cat([b.input_ids[:, 0] for b in _draw(sampler, 24)]).tolist()
    assert len({s // 10 for s in starts}) == 96  # no slot twice; the 3 left over are dropped
    assert len({s % 10 for s in starts}) > 5  # windows start anywhere inside their slot
    assert max(starts) <= len(TOKENS) - 1 - 10  # every target stays inside the split
    assert sampler.epoch == 1


def test_epoch_rollover_reshuffles() -> None:
    sampler = BatchSampler(TOKENS, batch_size=8, block_size=10, seed=0)
    bpe = sampler.batches_per_epoch
    first = _draw(sampler, bpe)
    assert sampler.epoch == 1 and sampler.state_dict() == {"epoch": 1, "cursor": 0}
    second = _draw(sampler, bpe)
    assert sampler.epoch == 2
    assert not _same(first, second)


@pytest.mark.parametrize("k", [0, 3, 12, 13, 30])
def test_resume_replays_exactly(k: int) -> None:
    # 12 batches per epoch, so k covers the start, mid-epoch, the boundary and a later epoch.
    running = BatchSampler(TOKENS, batch_size=8, block_size=10, seed=7)
    assert running.batches_per_epoch == 12
    _draw(running, k)
    state = running.state_dict()
    assert all(isinstance(v, int) for v in state.values())
    resumed = BatchSampler(TOKENS, batch_size=8, block_size=10, seed=7)
    resumed.load_state_dict(dict(state))
    assert resumed.epoch == running.epoch
    assert _same(_draw(running, 15), _draw(resumed, 15))


def test_load_state_rejects_a_foreign_state() -> None:
    sampler = BatchSampler(TOKENS, batch_size=8, block_size=10, seed=0)
    with pytest.raises(DataError, match="did the data, batch size or block size change"):
        sampler.load_state_dict({"epoch": 0, "cursor": 99})
    with pytest.raises(DataError, match="invalid sampler state"):
        sampler.load_state_dict({"epoch": "0", "cursor": 0})


def test_exactly_one_batch_fits() -> None:
    tokens = np.arange(4 * 8 + 1, dtype=np.uint16)
    sampler = BatchSampler(tokens, batch_size=4, block_size=8, seed=0)
    assert sampler.batches_per_epoch == 1
    starts = sampler.next_batch().input_ids[:, 0].tolist()
    assert sorted(s // 8 for s in starts) == [0, 1, 2, 3]
    assert max(starts) == 24  # the last slot has no room to move


def test_too_short_corpus_explains_the_fix() -> None:
    tokens = np.arange(4 * 8, dtype=np.uint16)  # one token short
    with pytest.raises(DataError) as info:
        BatchSampler(tokens, batch_size=4, block_size=8, seed=0, name="train")
    message = str(info.value)
    assert "train split has 32 tokens" in message
    assert "batch_size * block_size + 1 = 4 * 8 + 1 = 33" in message
    assert "lower training.batch_size or model.block_size, or add data" in message


def test_sampler_works_on_memmap(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    TOKENS.tofile(path)
    mm = np.memmap(path, dtype=np.uint16, mode="r")
    assert _same(_draw(BatchSampler(mm, 4, 8, 5), 3), _draw(BatchSampler(TOKENS, 4, 8, 5), 3))


def test_eval_batches_fixed_consecutive_windows() -> None:
    first = eval_batches(TOKENS, batch_size=4, block_size=10, num_batches=3)
    assert len(first) == 3
    starts = torch.cat([b.input_ids[:, 0] for b in first]).tolist()
    assert starts == list(range(0, 120, 10))
    assert torch.equal(first[0].targets, first[0].input_ids + 1)
    assert _same(first, eval_batches(TOKENS, 4, 10, 3))
    assert first[0].input_ids.device.type == "cpu"


def test_eval_batches_short_split() -> None:
    assert len(eval_batches(TOKENS, batch_size=4, block_size=10, num_batches=100)) == 24
    small = eval_batches(np.arange(31, dtype=np.uint16), batch_size=4, block_size=10, num_batches=5)
    assert len(small) == 1 and small[0].input_ids.shape == (3, 10)
    with pytest.raises(DataError, match=r"val split has 10 tokens.*raise data\.val_fraction"):
        eval_batches(np.arange(10, dtype=np.uint16), batch_size=4, block_size=10, num_batches=5)


# -- segments (shards), weighted parts, masks ---------------------------------------------------


def _segments(sizes: list[int], base: int = 0, mask_every: int = 0) -> Split:
    """Segments whose token values are base + 1000 * segment + position: a window that
    crossed a segment end would jump by more than 1."""
    segments = []
    for k, n in enumerate(sizes):
        shard = np.arange(n + 6, dtype=np.uint16) + base + 1000 * k
        mask = None
        if mask_every:
            mask = (np.arange(n + 6) % mask_every != 0).astype(np.uint8)
        segments.append(Segment(shard, 3, 3 + n, mask))  # segments need not start at 0
    return Split(tuple(segments))


def test_windows_never_cross_a_segment_end() -> None:
    split = _segments([95, 41, 7, 230])  # 7 is shorter than one window: never sampled
    sampler = BatchSampler(split, batch_size=4, block_size=10, seed=0)
    assert sampler.num_windows == 9 + 4 + 0 + 22
    starts: set[int] = set()
    for batch in _draw(sampler, sampler.batches_per_epoch * 3):
        x, y = batch.input_ids, batch.targets
        assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)
        first, last = x[:, 0] % 1000, y[:, -1] % 1000
        assert bool((first >= 3).all())  # never before its segment's start
        ends = torch.tensor([3 + [95, 41, 7, 230][int(k)] for k in x[:, 0] // 1000])
        assert bool((last < ends).all())  # the last target is inside the segment
        starts.update(x[:, 0].tolist())
    assert {s // 1000 for s in starts} == {0, 1, 3}


@pytest.mark.parametrize("k", [0, 5, 11, 12, 30])
def test_resume_replays_exactly_over_shards_and_mixtures(k: int) -> None:
    def make() -> BatchSampler:
        parts = [(_segments([95, 41, 60]), 2.0), (_segments([33, 77], base=10_000), 1.0)]
        return BatchSampler(parts, batch_size=3, block_size=8, seed=11)

    running = make()
    assert running.batches_per_epoch == 12
    _draw(running, k)
    state = running.state_dict()
    assert set(state) == {"epoch", "cursor"} and all(isinstance(v, int) for v in state.values())
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert _same(_draw(running, 20), _draw(resumed, 20))


def test_mixture_weights_set_each_parts_share_of_rows() -> None:
    # Token ranges tell the parts apart: part A's values are < 10_000, part B's above; each
    # part is two shards of consecutive values.
    def part(base: int) -> Split:
        values = np.arange(base, base + 8000, dtype=np.uint16)
        return Split((Segment(values[:4000], 0, 4000), Segment(values[4000:], 0, 4000)))

    sampler = BatchSampler([(part(0), 3.0), (part(10_000), 1.0)], 10, 16, seed=5)
    rows = sampler.batches_per_epoch * 10
    firsts = torch.cat([x.input_ids[:, 0] for x in _draw(sampler, sampler.batches_per_epoch)])
    from_a = int((firsts < 10_000).sum())
    assert abs(from_a - 0.75 * rows) <= 0.5  # 3:1, exactly up to rounding
    # B's share (247 rows) is under its 498 slots: one pass, no slot twice. A's (743 rows)
    # is over: every slot of A, then a second, freshly shuffled pass.
    assert len({int(v) // 16 for v in firsts if v >= 10_000}) == rows - from_a
    assert len({int(v) // 16 for v in firsts if v < 10_000}) == 2 * (3999 // 16) == 498
    # Every batch mixes the parts (rows are shuffled, not blocked by part).
    mixed = _draw(sampler, 5)
    assert all(bool((b.input_ids[:, 0] < 10_000).any()) for b in mixed)


def test_a_heavy_small_part_is_cycled_with_fresh_orders() -> None:
    small = _segments([81])  # 8 slots of 10
    big = _segments([2000], base=10_000)
    sampler = BatchSampler([(small, 1.0), (big, 1.0)], batch_size=4, block_size=10, seed=1)
    firsts = torch.cat([b.input_ids[:, 0] for b in _draw(sampler, sampler.batches_per_epoch)])
    small_rows = [int(v) for v in firsts if v < 10_000]
    assert len(small_rows) == 102  # half the rows: 12.75 passes over its 8 slots
    visits = np.bincount([(v - 3) // 10 for v in small_rows], minlength=8).tolist()
    assert sorted(visits) == [12, 12, 13, 13, 13, 13, 13, 13]
    passes = [[(v - 3) // 10 for v in small_rows[i : i + 8]] for i in range(0, 96, 8)]
    assert all(sorted(p) == list(range(8)) for p in passes)  # each pass visits every slot once
    assert len({tuple(p) for p in passes}) > 1  # in a fresh order


def test_a_part_too_small_for_one_window_is_named() -> None:
    tiny = Split((Segment(np.arange(5, dtype=np.uint16), 0, 5),), "train split of tiny.txt")
    with pytest.raises(DataError, match=r"train split of tiny\.txt has 5 tokens.*data\.sources"):
        BatchSampler([(TOKENS, 1.0), (tiny, 1.0)], batch_size=4, block_size=8, seed=0)


def test_masked_targets_are_ignore_index() -> None:
    split = _segments([500, 300], mask_every=3)
    sampler = BatchSampler(split, batch_size=6, block_size=12, seed=2)
    for batch in _draw(sampler, 10):
        x, y = batch.input_ids, batch.targets
        positions = (x + 1) % 1000  # the shard position of each target
        ignored = positions % 3 == 0
        assert bool((y[ignored] == IGNORE_INDEX).all())
        assert torch.equal(y[~ignored], (x + 1)[~ignored])
        assert bool(ignored.any()) and bool((~ignored).any())


def test_eval_batches_cover_every_part_in_order_with_masks() -> None:
    a = _segments([45, 45], mask_every=4)
    b = _segments([200], base=10_000)
    batches = eval_batches([a, b], batch_size=4, block_size=10, num_batches=3)
    assert len(batches) == 3
    firsts = torch.cat([x.input_ids[:, 0] for x in batches]).tolist()
    # 12 windows shared evenly: part A has 8 (4 per segment), then 4 from part B, in order.
    assert firsts[:6] == [3, 13, 23, 33, 1003, 1013]
    assert firsts[6:] == [10_003, 10_013, 10_023, 10_033, 10_043, 10_053]
    targets = torch.cat([x.targets for x in batches])
    inputs = torch.cat([x.input_ids for x in batches])
    masked = ((inputs + 1) % 1000 % 4 == 0) & (inputs < 10_000)
    assert bool((targets[masked] == IGNORE_INDEX).all())
    assert torch.equal(targets[~masked], (inputs + 1)[~masked])
    assert _same(batches, eval_batches([a, b], 4, 10, 3))
