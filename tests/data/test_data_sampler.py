"""BatchSampler and eval_batches: determinism, exact resume, epochs, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neat.data import BatchSampler, eval_batches
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
