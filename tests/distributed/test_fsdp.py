"""FSDP2 under the real `torchrun` on CPU (gloo): the mixed-precision policy and selective
activation checkpointing (training.fsdp, training.activation_checkpointing).

The helpers and the config are test_training's; each module starts its own runs.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.distributed.test_training import (
    CONFIG,
    DEVICE,
    GPU,
    assert_close_curves,
    losses,
    torchrun,
)

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.skipif(
        not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
        reason="needs torch.distributed with gloo",
    ),
    pytest.mark.skipif(GPU and torch.cuda.device_count() < 2, reason="needs two GPUs"),
]

# bf16 parameters in the blocks (fp32 master weights, fp32 reductions) against fp32
# throughout: measured on CPU, 20 steps differ by at most 1.2e-4 relative (4.6e-4 absolute).
BF16_RTOL = 2e-3


@dataclass(frozen=True)
class FsdpRuns:
    work: Path
    config: Path
    fp32: Path  # fsdp, fp32 (no casts), 20 steps


def fsdp_args(config: Path, run: Path, *overrides: str) -> tuple[str, ...]:
    sets = [x for o in ("training.distributed=fsdp", *overrides) for x in ("--set", o)]
    return ("-c", str(config), *sets, "--run-dir", str(run))


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory: pytest.TempPathFactory) -> FsdpRuns:
    work = tmp_path_factory.mktemp("fsdp")
    shakespeare = Path(__file__).resolve().parents[2] / "examples/data/tinyshakespeare.txt"
    (work / "corpus.txt").write_text(shakespeare.read_text(encoding="utf-8")[:60_000])
    config = work / "dist.yaml"
    config.write_text(CONFIG.replace("DEVICE", DEVICE), encoding="utf-8")
    torchrun(*fsdp_args(config, work / "fp32"), cwd=work)
    return FsdpRuns(work, config, work / "fp32")


def test_bf16_policy_with_selective_checkpointing_trains_like_fp32(fsdp_runs: FsdpRuns) -> None:
    """training.precision bf16 under fsdp: parameters gathered in bf16, gradients reduced in
    fp32 (the default policy), every other block recomputed, and no reshard after forward."""
    run = fsdp_runs.work / "bf16"
    overrides = (
        "training.precision=bf16",
        "training.activation_checkpointing=selective",
        "training.fsdp.reshard_after_forward=false",
    )
    torchrun(*fsdp_args(fsdp_runs.config, run, *overrides), cwd=fsdp_runs.work)
    got, fp32 = losses(run), losses(fsdp_runs.fp32)
    assert sorted(got) == list(range(1, 21))
    assert all(math.isfinite(v) for v in got.values())
    assert got != fp32  # the policy did cast
    for step in range(1, 21):
        assert got[step] == pytest.approx(fp32[step], rel=BF16_RTOL), step


def test_explicit_fp32_policy_is_the_default_fp32_run(fsdp_runs: FsdpRuns) -> None:
    run = fsdp_runs.work / "fp32_explicit"
    overrides = ("training.fsdp.param_dtype=fp32", "training.fsdp.reduce_dtype=fp32")
    torchrun(*fsdp_args(fsdp_runs.config, run, *overrides), cwd=fsdp_runs.work)
    assert_close_curves(losses(run), losses(fsdp_runs.fp32), range(1, 21))
