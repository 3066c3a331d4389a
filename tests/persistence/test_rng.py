"""RNG capture/restore: after a JSON round trip, every generator repeats the same draws."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
import structlog
import torch

from neat.errors import CheckpointError
from neat.persistence import capture_rng_state, restore_rng_state


def _draws() -> list[Any]:
    # gauss/normal also exercise python's gauss_next and numpy's cached gaussian.
    return [
        random.random(),
        random.gauss(0.0, 1.0),
        np.random.rand(3).tolist(),
        float(np.random.normal()),
        torch.rand(3).tolist(),
        torch.randn(2).tolist(),
        torch.randint(0, 1000, (4,)).tolist(),
    ]


def test_restore_repeats_the_same_draws_after_json_round_trip() -> None:
    random.gauss(0.0, 1.0)  # leave a cached gaussian in both python and numpy
    np.random.normal()
    state = json.loads(json.dumps(capture_rng_state()))
    first = _draws()
    assert _draws() != first  # the generators really moved on

    restore_rng_state(state)
    assert _draws() == first


def test_state_has_every_cpu_generator_and_cuda_only_with_cuda() -> None:
    state = capture_rng_state()
    assert {"python", "numpy", "torch"} <= set(state)
    assert ("cuda" in state) == torch.cuda.is_available()


def test_missing_cuda_entry_is_tolerated() -> None:
    state = capture_rng_state()
    state.pop("cuda", None)
    first = _draws()
    restore_rng_state(state)
    assert _draws() == first


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback")
def test_cuda_state_on_a_cpu_machine_warns_and_restores_the_rest() -> None:
    state = capture_rng_state()
    state["cuda"] = [state["torch"]]
    first = _draws()
    with structlog.testing.capture_logs() as logs:
        restore_rng_state(state)
    assert _draws() == first
    assert [e["event"] for e in logs] == ["cuda_rng_state_not_restored"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generators_are_restored() -> None:
    state = json.loads(json.dumps(capture_rng_state()))
    first = torch.rand(4, device="cuda").tolist()
    restore_rng_state(state)
    assert torch.rand(4, device="cuda").tolist() == first


def test_missing_cpu_entry_is_an_error() -> None:
    state = capture_rng_state()
    del state["torch"]
    with pytest.raises(CheckpointError, match="'torch'"):
        restore_rng_state(state)
