"""Two-process training through the real `torchrun` on CPU (gloo), against one process.

The runs are shared by the module (torchrun's start-up costs seconds); each test reads them.
The global batch is the same in every run (training.batch_size; each of two processes takes
half of it), so the one- and two-process loss curves may differ only by float rounding.

`NEAT_TEST_DEVICE=cuda` runs the same tests on two GPUs (NCCL). GPU kernels are not
deterministic (the embedding backward adds with atomics) and TF32 is on, so there resumes
are compared within a tolerance instead of bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from neat.config import load_config
from neat.di import build_container
from neat.monitoring import read_metrics

GPU = os.environ.get("NEAT_TEST_DEVICE") == "cuda"

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.skipif(
        not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
        reason="needs torch.distributed with gloo",
    ),
    pytest.mark.skipif(GPU and torch.cuda.device_count() < 2, reason="needs two GPUs"),
]

# Dropout 0: dropout masks are drawn per rank, so only without it can the curves match.
# grad_accum_steps 2 exercises DDP's skipped all-reduce on the first micro-step.
CONFIG = """\
name: dist
model: {type: gpt, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, dropout: 0.0}
data: {type: text, path: corpus.txt, tokenizer: {type: char}, val_fraction: 0.1}
optimization: {lr: 1.0e-3, min_lr: 1.0e-4, warmup_steps: 5, decay_steps: 100}
training: {max_steps: 20, batch_size: 4, grad_accum_steps: 2, seed: 7, DEVICE}
evaluation: {interval: 10, batches: 2, batch_size: 4}
monitoring: {log_interval: 1, progress: plain}
checkpoint: {interval: 10, keep_last: 3}
"""
DEVICE = "device: cuda, precision: fp32" if GPU else "device: cpu"
RTOL, ATOL = (1e-3, 1e-4) if GPU else (1e-5, 1e-6)  # losses
# Parameters: the key bias of attention gets a zero gradient in exact arithmetic (softmax
# ignores a shift), so its float noise, normalised by Adam, moves it ~1e-6 differently.
PARAM_RTOL, PARAM_ATOL = (1e-2, 1e-3) if GPU else (1e-4, 1e-5)


# Signs that the launch itself failed (rendezvous or a socket), before any training ran.
LAUNCH_FAILURES = ("endezvous", "DistStoreError", "socket", "Connection", "Address already")


def torchrun(*args: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """A torchrun launch; one retry when the launcher failed to connect its processes before
    any step ran (a busy CI machine can miss the rendezvous), never after training began."""
    command = [*_launcher(nproc), "train", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    run_dir = Path(args[args.index("--run-dir") + 1]) if "--run-dir" in args else None
    started = run_dir is not None and (cwd / run_dir / "metrics.jsonl").exists()
    if done.returncode and not started and any(s in done.stderr for s in LAUNCH_FAILURES):
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _launcher(nproc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "neat",
        "--log-level",
        "INFO",  # so that rank 0's info lines can be counted on the console
    ]


def train_in_process(config: Path, run: Path, *overrides: str, resume: Path | None = None) -> None:
    """A plain one-process run (no torchrun variables: the pytest process has none)."""
    container = build_container(
        load_config(config, list(overrides)), run_dir=run, resume_from=resume
    )
    container.trainer().fit()


def losses(run: Path, event: str = "train", key: str = "loss") -> dict[int, float]:
    """step -> value, the last record of a step winning (a resumed run appends)."""
    return {r["step"]: r[key] for r in read_metrics(run / "metrics.jsonl") if r["event"] == event}


def state_json(run: Path, step: int) -> dict[str, Any]:
    path = run / "checkpoints" / f"step_{step}" / "state.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def assert_close_curves(got: dict[int, float], expected: dict[int, float], steps: range) -> None:
    for step in steps:
        assert got[step] == pytest.approx(expected[step], rel=RTOL, abs=ATOL), step


def assert_same_curves(got: dict[int, float], expected: dict[int, float], steps: range) -> None:
    """Bit for bit on CPU; within the tolerance on GPUs (see the module's docstring)."""
    if GPU:
        assert_close_curves(got, expected, steps)
    else:
        assert [got[s] for s in steps] == [expected[s] for s in steps]


@dataclass(frozen=True)
class Runs:
    work: Path
    config: Path
    one: Path  # one process, 20 steps
    two: Path  # two processes, 20 steps
    two_err: str  # the torchrun output of `two`
    resumed: Path  # two processes, stopped at 10, resumed to 20


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    work = tmp_path_factory.mktemp("distributed")
    shakespeare = Path(__file__).resolve().parents[2] / "examples/data/tinyshakespeare.txt"
    (work / "corpus.txt").write_text(shakespeare.read_text(encoding="utf-8")[:60_000])
    config = work / "dist.yaml"
    config.write_text(CONFIG.replace("DEVICE", DEVICE), encoding="utf-8")
    args = ("-c", str(config), "--run-dir")

    train_in_process(config, work / "one")
    two = torchrun(*args, str(work / "two"), cwd=work)
    torchrun(*args, str(work / "resumed"), "--set", "training.max_steps=10", cwd=work)
    torchrun(*args, str(work / "resumed"), "--resume", "auto", cwd=work)
    return Runs(work, config, work / "one", work / "two", two.stderr, work / "resumed")


def test_two_processes_match_one_process_with_the_same_global_batch(runs: Runs) -> None:
    one, two = losses(runs.one), losses(runs.two)
    assert sorted(two) == list(range(1, 21))
    assert_close_curves(two, one, range(1, 21))
    assert_close_curves(
        losses(runs.two, "eval", "val_loss"),
        losses(runs.one, "eval", "val_loss"),
        range(10, 21, 10),
    )
    assert state_json(runs.two, 20)["tokens_seen"] == state_json(runs.one, 20)["tokens_seen"]
    expected = load_file(runs.one / "checkpoints/step_20/model.safetensors")
    got = load_file(runs.two / "checkpoints/step_20/model.safetensors")
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=PARAM_RTOL, atol=PARAM_ATOL)


def test_resume_of_a_two_process_run_is_exact(runs: Runs) -> None:
    assert_same_curves(losses(runs.resumed), losses(runs.two), range(11, 21))
    evals = (losses(runs.resumed, "eval", "val_loss"), losses(runs.two, "eval", "val_loss"))
    assert_same_curves(*evals, range(20, 21))
    for step in (10, 20):
        saved = state_json(runs.resumed, step)
        cursor = {"epoch": 0, "cursor": 2 * step}  # global batches: two micro-steps a step
        assert saved["data_state"] == {"world_size": 2, "ranks": [cursor, cursor]}
        rngs = saved["rng_state"]["ranks"]
        assert len(rngs) == 2 and rngs[0]["torch"] != rngs[1]["torch"]  # a seed per rank
    if not GPU:
        a = load_file(runs.two / "checkpoints/step_20/model.safetensors")
        b = load_file(runs.resumed / "checkpoints/step_20/model.safetensors")
        assert all(torch.equal(a[name], b[name]) for name in a)


def test_only_rank_zero_writes_and_speaks(runs: Runs) -> None:
    records = read_metrics(runs.two / "metrics.jsonl")
    steps = [r["step"] for r in records if r["event"] == "train"]
    assert steps == list(range(1, 21))  # one writer: no line twice
    assert [r["event"] for r in records].count("run_start") == 1
    assert sorted(p.name for p in runs.two.iterdir()) == [
        ".lock",  # rank 0's run-directory lock: the one writer
        "checkpoints",
        "config.yaml",
        "log.jsonl",
        "metrics.jsonl",
        "tokenizer.json",
    ]
    assert sorted(p.name for p in (runs.two / "checkpoints").iterdir()) == ["step_10", "step_20"]
    log_lines = [json.loads(line) for line in (runs.two / "log.jsonl").read_text().splitlines()]
    assert {line.get("rank") for line in log_lines} == {0}
    assert runs.two_err.count("step 20/20") == 1  # one progress display
    assert runs.two_err.count("token_cache.hit") == 1  # rank 1 logs only warnings


def test_one_process_continues_a_two_process_checkpoint(runs: Runs) -> None:
    """Another world size resumes the same data order (the position counts global batches);
    only RNG streams are fresh, which dropout 0 does not see."""
    run = runs.work / "one_from_two"
    train_in_process(runs.config, run, resume=runs.resumed / "checkpoints/step_10")
    assert_close_curves(losses(run), losses(runs.two), range(11, 21))
    assert state_json(run, 20)["data_state"] == {"epoch": 0, "cursor": 40}


def test_fsdp_trains_like_ddp_and_reads_and_writes_the_same_checkpoints(runs: Runs) -> None:
    args = ("-c", str(runs.config), "--set", "training.distributed=fsdp")
    args = (*args, "--set", "checkpoint.format=safetensors", "--run-dir")  # auto: dcp
    fresh = runs.work / "fsdp"
    torchrun(*args, str(fresh), cwd=runs.work)
    assert_close_curves(losses(fresh), losses(runs.two), range(1, 21))
    # sharded tensors were gathered into the one checkpoint layout, tied weights included
    assert state_json(fresh, 20)["tensor_aliases"] == state_json(runs.two, 20)["tensor_aliases"]
    for name in ("model.safetensors", "optimizer.safetensors"):
        expected = load_file(runs.two / "checkpoints/step_20" / name)
        got = load_file(fresh / "checkpoints/step_20" / name)
        assert sorted(got) == sorted(expected)
        for key, tensor in expected.items():
            torch.testing.assert_close(got[key], tensor, rtol=PARAM_RTOL, atol=PARAM_ATOL)

    # and a DDP checkpoint resumes under FSDP: whole tensors cut into each rank's shards
    switched = runs.work / "fsdp_from_ddp"
    resume = str(runs.resumed / "checkpoints/step_10")
    torchrun(*args, str(switched), "--resume", resume, cwd=runs.work)
    assert_close_curves(losses(switched), losses(runs.two), range(11, 21))


def test_sigterm_stops_every_rank_after_the_same_step_with_a_checkpoint(runs: Runs) -> None:
    run = runs.work / "terminated"
    args = ["train", "-c", str(runs.config), "--run-dir", str(run)]
    proc = subprocess.Popen(
        [*_launcher(2), *args, "--set", "training.max_steps=100000"],
        cwd=runs.work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ((run / "metrics.jsonl").is_file() and len(losses(run)) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # torchrun forwards it to both workers
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    stopped = max(losses(run))
    saved = state_json(run, stopped)  # written after the ranks agreed on the step
    cursor = {"epoch": 0, "cursor": 2 * stopped}
    assert saved["data_state"] == {"world_size": 2, "ranks": [cursor, cursor]}, stderr[-3000:]
    ends = [r for r in read_metrics(run / "metrics.jsonl") if r["event"] == "run_end"]
    assert [(r["step"], r["status"]) for r in ends] == [(stopped, "interrupted")]


BLOCK_VARIANTS = {
    "llama": (
        "model.attention=gqa",
        "model.n_kv_head=1",
        "model.position=rope",
        "model.norm=rmsnorm",
        "model.mlp=swiglu",
        "model.qk_norm=true",
    ),
    "hyena": ("model.attention=hyena", "model.position=none", "model.hyena.filter_order=8"),
}


@pytest.mark.parametrize("variant", sorted(BLOCK_VARIANTS))
def test_other_blocks_train_under_torchrun_like_one_process(runs: Runs, variant: str) -> None:
    overrides = [x for o in BLOCK_VARIANTS[variant] for x in ("--set", o)]
    short = ["--set", "training.max_steps=6", "--set", "checkpoint.interval=6"]
    one, two = runs.work / f"{variant}_one", runs.work / f"{variant}_two"
    train_in_process(runs.config, one, *BLOCK_VARIANTS[variant], *short[1::2])
    torchrun("-c", str(runs.config), *overrides, *short, "--run-dir", str(two), cwd=runs.work)
    assert sorted(losses(two)) == list(range(1, 7))
    assert_close_curves(losses(two), losses(one), range(1, 7))
