"""FSDP2 under the real `torchrun` on CPU (gloo): the mixed-precision policy and selective
activation checkpointing (training.fsdp, training.activation_checkpointing), and sharded
checkpoints (checkpoint.format: auto is dcp under fsdp): written per rank, resumed on the
same and on another world size, consolidated into one safetensors checkpoint.

The helpers and the config are test_training's; each module starts its own runs.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from neat.errors import CheckpointError
from neat.models.load import load_trained_model
from neat.persistence import read_checkpoint_meta
from neat.persistence.consolidate import consolidate_checkpoint
from neat.persistence.manifest import find_latest
from tests.distributed.test_training import (
    CONFIG,
    DEVICE,
    GPU,
    assert_close_curves,
    assert_same_curves,
    losses,
    state_json,
    torchrun,
    train_in_process,
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


# -- sharded checkpoints (DCP) --------------------------------------------------------------------


def test_each_rank_writes_its_own_shards(fsdp_runs: FsdpRuns) -> None:
    step = fsdp_runs.fp32 / "checkpoints/step_20"
    assert sorted(str(p.relative_to(step)) for p in step.rglob("*") if p.is_file()) == [
        "config.yaml",
        "dcp/.metadata",  # DCP's index, by rank 0
        "dcp/__0_0.distcp",  # rank 0's shards
        "dcp/__1_0.distcp",  # rank 1's
        "state.json",
        "tokenizer.json",
    ]
    saved = state_json(fsdp_runs.fp32, 20)
    assert saved["format"] == "dcp" and saved["dcp"] == {"world_size": 2, "optimizer": True}
    assert sorted(saved["files"]) == sorted(
        str(p.relative_to(step)) for p in step.rglob("*") if p.name != "state.json" and p.is_file()
    )
    # no gather: every parameter (and its Adam state) is stored as two halves along dim 0,
    # each in the file of the rank that held it (DCP's own index says where)
    from torch.distributed.checkpoint import FileSystemReader

    index = FileSystemReader(step / "dcp").read_metadata()
    tensors = {k: v for k, v in index.state_dict_metadata.items() if hasattr(v, "chunks")}
    params = [k for k in tensors if k.startswith("model.")]
    assert len(params) >= 20 and any(k.startswith("optimizer.state.") for k in tensors)
    for key, meta in tensors.items():
        if len(meta.size) == 0 or meta.size[0] < 2:
            continue  # a scalar (Adam's step) is not sharded
        files = {index.storage_data[_index(key, c.offsets)].relative_path for c in meta.chunks}
        assert files == {"__0_0.distcp", "__1_0.distcp"}, key
        assert all(c.sizes[0] < meta.size[0] for c in meta.chunks), key
    assert not any((fsdp_runs.fp32 / "checkpoints").glob(".tmp-*"))


def test_a_dcp_checkpoint_missing_a_shard_is_never_resumed(
    fsdp_runs: FsdpRuns, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    for step in (10, 20):
        shutil.copytree(fsdp_runs.fp32 / f"checkpoints/step_{step}", checkpoints / f"step_{step}")
    (checkpoints / "step_20/dcp/__1_0.distcp").unlink()  # as if rank 1 died mid-save
    with pytest.raises(CheckpointError, match=r"__1_0\.distcp is missing"):
        read_checkpoint_meta(checkpoints / "step_20")
    assert find_latest(checkpoints) == checkpoints / "step_10"


def test_resume_of_a_sharded_run_on_two_ranks_is_exact(fsdp_runs: FsdpRuns) -> None:
    run = fsdp_runs.work / "resumed"
    torchrun(*fsdp_args(fsdp_runs.config, run, "training.max_steps=10"), cwd=fsdp_runs.work)
    assert state_json(run, 10)["format"] == "dcp"
    torchrun(*fsdp_args(fsdp_runs.config, run), "--resume", "auto", cwd=fsdp_runs.work)
    assert_same_curves(losses(run), losses(fsdp_runs.fp32), range(11, 21))


def test_two_ranks_resume_on_one_process(fsdp_runs: FsdpRuns) -> None:
    """DCP reshards on load: the one process reads both ranks' shards. The data position is
    shared (global batches) and dropout is 0, so only float rounding differs."""
    run = fsdp_runs.work / "two_to_one"
    train_in_process(fsdp_runs.config, run, resume=fsdp_runs.fp32 / "checkpoints/step_10")
    assert_close_curves(losses(run), losses(fsdp_runs.fp32), range(11, 21))


def test_one_process_dcp_checkpoint_resumes_on_two_ranks(fsdp_runs: FsdpRuns) -> None:
    run = fsdp_runs.work / "one_to_two"
    first = ("training.max_steps=10", "checkpoint.format=dcp")
    train_in_process(fsdp_runs.config, run, *first)
    assert state_json(run, 10)["dcp"]["world_size"] == 1
    torchrun(*fsdp_args(fsdp_runs.config, run), "--resume", "auto", cwd=fsdp_runs.work)
    assert_close_curves(losses(run), losses(fsdp_runs.fp32), range(11, 21))


def _index(key: str, offsets: torch.Size) -> object:
    from torch.distributed.checkpoint.metadata import MetadataIndex

    return MetadataIndex(fqn=key, offset=offsets)


def _consolidated(fsdp_runs: FsdpRuns) -> Path:
    out = fsdp_runs.work / "consolidated"
    if not out.exists():
        consolidate_checkpoint(fsdp_runs.fp32, out)
    return out


def test_consolidate_gives_the_dcp_weights_as_one_safetensors_checkpoint(
    fsdp_runs: FsdpRuns,
) -> None:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = _consolidated(fsdp_runs)
    step = out / "checkpoints/step_20"
    assert sorted(p.name for p in step.iterdir()) == [
        "config.yaml",
        "model.safetensors",
        "optimizer.json",
        "optimizer.safetensors",
        "state.json",
        "tokenizer.json",
    ]
    source = state_json(fsdp_runs.fp32, 20)
    saved = json.loads((step / "state.json").read_text(encoding="utf-8"))
    for key in ("step", "tokens_seen", "data_state", "rng_state", "config"):
        assert saved[key] == source[key], key
    # DCP's own reader (a torch.save pickle, fine in a test) against what neat loads
    raw = fsdp_runs.work / "raw.pt"
    dcp_to_torch_save(fsdp_runs.fp32 / "checkpoints/step_20/dcp", raw)
    expected = torch.load(raw, weights_only=False)["model"]
    model, _, _ = load_trained_model(out)
    got = model.state_dict()
    assert sorted(got) == sorted(expected)
    assert all(torch.equal(got[name], expected[name]) for name in expected)
    # and the tools read it: generate from the consolidated run, inspect it
    for command in (
        ["generate", "--checkpoint", str(out), "--prompt", "RO", "--max-new-tokens", "4"],
        ["checkpoints", "inspect", str(out)],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "neat", *command], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
    with pytest.raises(CheckpointError, match="already a single safetensors"):
        consolidate_checkpoint(out, fsdp_runs.work / "again")
