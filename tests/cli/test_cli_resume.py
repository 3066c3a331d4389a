"""Exact resume through the real CLI in subprocesses: a clean stop, SIGTERM and SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neat.monitoring import read_metrics

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# Runs the real CLI with the checkpoint file copy slowed down while step 20 is saved, so the
# test can SIGKILL the process in the middle of writing that checkpoint.
SLOW_SAVE = """
import sys, time
import neat.persistence.files as files
copy = files.copy_file
def slow_copy(source, target):
    copy(source, target)
    if ".tmp-step_20" in str(target):
        time.sleep(120)
files.copy_file = slow_copy
from neat.cli import main
sys.argv = ["neat", *sys.argv[1:]]
main()
"""


def neat(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neat", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def train_losses(run: Path) -> dict[int, float]:
    """step -> loss, taking the last record of a step (a resumed run appends)."""
    return {
        r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"
    }


def eval_losses(run: Path) -> dict[int, float]:
    return {
        r["step"]: r["val_loss"]
        for r in read_metrics(run / "metrics.jsonl")
        if r["event"] == "eval"
    }


@pytest.fixture
def reference(tiny_config: Path, tmp_path: Path) -> Path:
    """An uninterrupted 30-step run."""
    run = tmp_path / "reference"
    done = neat("train", "-c", str(tiny_config), "--run-dir", str(run), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return run


def test_stop_and_resume_is_bit_identical(
    tiny_config: Path, tmp_path: Path, reference: Path
) -> None:
    run = tmp_path / "resumed"
    first = neat(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(run),
        "--set",
        "training.max_steps=20",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    # without --resume, an existing run directory is refused rather than overwritten
    refused = neat("train", "-c", str(tiny_config), "--run-dir", str(run), cwd=tmp_path)
    assert refused.returncode == 2 and "--resume auto" in refused.stderr

    second = neat(
        "train", "-c", str(tiny_config), "--run-dir", str(run), "--resume", "auto", cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr

    expected, got = train_losses(reference), train_losses(run)
    assert sorted(got) == list(range(1, 31))
    assert [got[s] for s in range(21, 31)] == [expected[s] for s in range(21, 31)]  # bit for bit
    assert eval_losses(run)[30] == eval_losses(reference)[30]


def test_sigkill_during_a_checkpoint_save_loses_nothing(
    tiny_config: Path, tmp_path: Path, reference: Path
) -> None:
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, "train", "-c", str(tiny_config), "--run-dir", str(run)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    checkpoints = run / "checkpoints"
    while not (checkpoints.is_dir() and any(checkpoints.glob(".tmp-step_20*"))):
        assert proc.poll() is None, "the run ended before the step-20 save began"
        assert time.monotonic() < deadline, "the step-20 save never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (checkpoints / "step_20").exists()
    assert (checkpoints / "step_10" / "state.json").is_file()

    resumed = neat(
        "train", "-c", str(tiny_config), "--run-dir", str(run), "--resume", "auto", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not list(checkpoints.glob(".tmp-*")), "the half-written checkpoint was not cleaned up"
    expected, got = train_losses(reference), train_losses(run)
    assert [got[s] for s in range(11, 31)] == [expected[s] for s in range(11, 31)]


def test_sigterm_saves_a_checkpoint_and_resume_continues_exactly(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "terminated"
    long_run = [
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(run),
        "--set",
        "training.max_steps=100000",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "neat", *long_run],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(train_losses(run)) >= 12):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    stopped_at = max(train_losses(run))
    assert (run / "checkpoints" / f"step_{stopped_at}" / "state.json").is_file()

    until = stopped_at + 5
    resumed = neat(*long_run[:-1], f"training.max_steps={until}", "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    done = neat(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(straight),
        "--set",
        f"training.max_steps={until}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    expected, got = train_losses(straight), train_losses(run)
    assert [got[s] for s in range(1, until + 1)] == [expected[s] for s in range(1, until + 1)]
