"""The prefetching wrapper hands out exactly the sampler's batches and reports the position
of the last batch handed out, so a checkpoint taken while batches wait in the queue resumes
exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from neat.data import BatchSampler
from neat.data.prefetch import PrefetchingBatches
from neat.interfaces import Batch

TOKENS = np.random.default_rng(0).integers(0, 50, size=5_000).astype(np.uint16)


def sampler() -> BatchSampler:
    return BatchSampler(TOKENS, batch_size=4, block_size=16, seed=11)


def same(a: list[Batch], b: list[Batch]) -> bool:
    return all(
        torch.equal(x.input_ids, y.input_ids) and torch.equal(x.targets, y.targets)
        for x, y in zip(a, b, strict=True)
    )


def test_hands_out_the_samplers_batches_in_order() -> None:
    plain, ahead = sampler(), PrefetchingBatches(sampler(), depth=3)
    n = plain.batches_per_epoch + 5  # across an epoch boundary
    assert same([plain.next_batch() for _ in range(n)], [ahead.next_batch() for _ in range(n)])
    assert ahead.epoch == 1  # attributes of the sampler pass through
    ahead.close()


def test_position_is_the_last_batch_handed_out_and_resume_is_exact() -> None:
    plain, ahead = sampler(), PrefetchingBatches(sampler(), depth=4)
    for _ in range(7):
        plain.next_batch()
        ahead.next_batch()
    saved = ahead.state_dict()
    assert saved == plain.state_dict()  # not the producer's position, which ran ahead
    expected = [plain.next_batch() for _ in range(6)]

    resumed = PrefetchingBatches(sampler(), depth=2)
    resumed.load_state_dict(saved)
    assert same([resumed.next_batch() for _ in range(6)], expected)
    # loading a position mid-run drops the batches made ahead
    resumed.load_state_dict(saved)
    assert same([resumed.next_batch() for _ in range(6)], expected)
    resumed.close()
    ahead.close()


def test_close_puts_the_sampler_back_where_the_consumer_is() -> None:
    inner = sampler()
    ahead = PrefetchingBatches(inner, depth=3)
    for _ in range(3):
        ahead.next_batch()
    ahead.close()
    assert inner.state_dict() == {"epoch": 0, "cursor": 3}


class Failing:
    def __init__(self) -> None:
        self.calls = 0

    def next_batch(self) -> Batch:
        self.calls += 1
        if self.calls > 2:
            raise RuntimeError("shard went missing")
        return Batch(input_ids=torch.zeros(1, 2), targets=torch.zeros(1, 2))

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = int(state["calls"])


def test_an_error_in_the_producer_reaches_the_consumer() -> None:
    ahead = PrefetchingBatches(Failing(), depth=1)
    ahead.next_batch()
    ahead.next_batch()
    with pytest.raises(RuntimeError, match="shard went missing"):
        ahead.next_batch()
