"""Exact resume through the real CLI in subprocesses: a clean stop, SIGTERM and SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.di import build_container
from neat.errors import NeatError
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


def _start_long_run(tiny_config: Path, run: Path, cwd: Path) -> subprocess.Popen[str]:
    """A training run that goes on until stopped, once it has logged its first step."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "neat",
            "train",
            "-c",
            str(tiny_config),
            "--run-dir",
            str(run),
            "--set",
            "training.max_steps=100000",
        ],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ((run / "metrics.jsonl").is_file() and train_losses(run)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def test_a_second_writer_of_a_run_dir_is_refused(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "shared"
    first = _start_long_run(tiny_config, run, tmp_path)
    try:
        before = sorted(p.name for p in run.iterdir())
        config_before = (run / "config.yaml").read_text()
        other_seed = ["--set", "training.seed=8", "--set", "training.max_steps=5"]
        second = CliRunner().invoke(
            cli,
            [
                "train",
                "-c",
                str(tiny_config),
                "--run-dir",
                str(run),
                "--resume",
                "auto",
                *other_seed,
            ],
        )
        assert second.exit_code == 2, second.output
        assert f"run directory {run} is in use by another training run" in second.stderr
        assert f"process {first.pid} holds" in second.stderr

        # the lock itself (not only the CLI's early look) keeps a library caller out
        config = load_config(tiny_config, ["training.seed=8", "training.max_steps=5"])
        with pytest.raises(NeatError, match=f"process {first.pid} holds"):
            build_container(config, run_dir=run).trainer().fit()
        assert sorted(p.name for p in run.iterdir()) == before
        assert (run / "config.yaml").read_text() == config_before  # still seed 7
    finally:
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM, stderr


def _train(tiny_config: Path, run: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["train", "-c", str(tiny_config), "--run-dir", str(run), *args]
    )
    assert result.exit_code == 0, result.output
    return result.stderr


def test_resume_auto_follows_the_branch_being_continued(tiny_config: Path, tmp_path: Path) -> None:
    """Run to 60, branch from step 20 with another lr, stop at 40: `--resume auto` must
    continue the branch (step 40), not the abandoned run's higher step 60."""
    run = tmp_path / "branched"
    keep = "checkpoint.keep_last=10"
    _train(tiny_config, run, "--set", "training.max_steps=60", "--set", keep)
    branch = ["--set", "optimization.lr=5e-4", "--set", keep]
    warned = _train(
        tiny_config, run, "--resume", str(run / "checkpoints" / "step_20"), *branch,
        "--set", "training.max_steps=40",
    )  # fmt: skip
    assert "optimization.lr: 0.001 -> 0.0005" in warned  # one warning names the change
    assert "training.max_steps: 60 -> 40" in warned

    _train(tiny_config, run, "--resume", "auto", *branch, "--set", "training.max_steps=60")
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"]
    assert steps[-40:] == [*range(21, 41), *range(41, 61)]  # the branch, then on from 40


def test_resume_past_max_steps_is_refused(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "done"
    _train(tiny_config, run, "--set", "training.max_steps=20")
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "-c",
            str(tiny_config),
            "--run-dir",
            str(run),
            "--resume",
            "auto",
            "--set",
            "training.max_steps=10",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "is at step 20, beyond training.max_steps=10" in result.stderr
    assert "raise training.max_steps" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing written


def _replace_a_character(corpus: Path) -> None:
    """The same vocabulary size, other ids: 'z' becomes '~' (absent), which sorts last."""
    text = corpus.read_text(encoding="utf-8")
    assert "z" in text and "~" not in text
    corpus.write_text(text.replace("z", "~"), encoding="utf-8")


def test_resume_refuses_a_tokenizer_that_maps_ids_differently(
    tiny_config: Path, corpus: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    _train(tiny_config, run, "--set", "training.max_steps=10")
    _replace_a_character(corpus)
    result = CliRunner().invoke(
        cli, ["train", "-c", str(tiny_config), "--run-dir", str(run), "--resume", "auto"]
    )
    assert result.exit_code == 2, result.output
    assert "maps token ids differently from this run's tokenizer" in result.stderr
    assert "only in the checkpoint: ['z']; only in this run: ['~']" in result.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_10"]


def test_init_from_refuses_another_tokenizer_unless_told_to_ignore_it(
    tiny_config: Path, corpus: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    _train(tiny_config, source, "--set", "training.max_steps=10")
    _replace_a_character(corpus)
    init = ["--set", f"model.init_from={source}", "--set", "training.max_steps=5"]
    refused = CliRunner().invoke(
        cli, ["train", "-c", str(tiny_config), "--run-dir", str(tmp_path / "new"), *init]
    )
    assert refused.exit_code == 2, refused.output
    assert "maps token ids differently" in refused.stderr
    assert "training.init_from_tokenizer: ignore" in refused.stderr
    assert not (tmp_path / "new").exists()
    _train(tiny_config, tmp_path / "new", *init, "--set", "training.init_from_tokenizer=ignore")
