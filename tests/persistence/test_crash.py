"""kill -9 in the middle of a save: the previous checkpoint survives and the debris is swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import neat
from neat.cli import cli
from neat.interfaces import TrainState
from neat.persistence import Checkpointer, is_complete

REPO_ROOT = Path(neat.__file__).resolve().parent.parent

# The same recipe runs in the child (to save) and in the test (to know what was saved).
MODEL_RECIPE = """
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.LayerNorm(16))
optimizer = torch.optim.AdamW(model.parameters())
model(torch.randn(4, 16)).sum().backward()
optimizer.step()
"""

CHILD = """
import sys, time
from pathlib import Path
import neat.persistence.files as files
from neat.interfaces import TrainState
from neat.persistence import Checkpointer

checkpointer = Checkpointer(Path(sys.argv[1]))
checkpointer.save(TrainState(step=1, tokens_seen=10), model, optimizer)

def stuck_copy(source, target):
    # The model and optimizer files of step 2 are already written: hang mid-save.
    target.write_bytes(b"partial")
    time.sleep(120)

files.copy_file = stuck_copy
extra = {"tokenizer.json": Path(sys.argv[2])}
checkpointer.save(TrainState(step=2, tokens_seen=20), model, optimizer, extra)
"""


def _wait_for(path: Path, child: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigkill_mid_save_keeps_previous_checkpoint(ckpt_dir: Path, tmp_path: Path) -> None:
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text("{}")
    script = textwrap.dedent(MODEL_RECIPE) + textwrap.dedent(CHILD)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(ckpt_dir), str(tokenizer)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        tmp_dir = ckpt_dir / f".tmp-step_2-{child.pid}"
        _wait_for(tmp_dir / "tokenizer.json", child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert (tmp_dir / "model.safetensors").exists()  # killed with step 2 half written
    assert not (ckpt_dir / "step_2").exists()

    namespace: dict[str, object] = {}
    exec(textwrap.dedent(MODEL_RECIPE), namespace)
    expected = namespace["model"]
    assert isinstance(expected, torch.nn.Module)

    checkpointer = Checkpointer(ckpt_dir)  # sweeps the dead child's temporary directory
    assert not tmp_dir.exists()
    assert checkpointer.latest() == ckpt_dir / "step_1"
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.LayerNorm(16))
    optimizer = torch.optim.AdamW(model.parameters())
    state = checkpointer.load(ckpt_dir / "step_1", model, optimizer)
    assert (state.step, state.tokens_seen) == (1, 10)
    for name, tensor in expected.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name

    # Training goes on: the interrupted step can be saved again.
    assert checkpointer.save(TrainState(step=2), model, optimizer) == ckpt_dir / "step_2"
    assert checkpointer.latest() == ckpt_dir / "step_2"


# A real full disk for a real run: RLIMIT_FSIZE makes every write past `limit` bytes fail
# with EFBIG where a full disk fails with ENOSPC (SIGXFSZ ignored, or it would kill).
FULL_DISK_DRIVER = """
import resource, signal, sys
from neat.cli import main

limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = ["neat", *sys.argv[2:]]
main()
"""
MODEL_BYTES_BELOW = 60_000  # the tiny GPT's model.safetensors is ~110 kB; logs stay below


def test_disk_full_during_a_checkpoint_save_keeps_the_last_good_one(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train = ["train", "-c", str(tiny_config), "--run-dir", str(run)]
    first = CliRunner().invoke(cli, [*train, "--set", "training.max_steps=10"])
    assert first.exit_code == 0, first.output
    driver = tmp_path / "driver.py"
    driver.write_text(FULL_DISK_DRIVER)
    resume = [*train, "--resume", "auto", "--set", "training.max_steps=20"]
    done = subprocess.run(
        [sys.executable, str(driver), str(MODEL_BYTES_BELOW), *resume],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert "no space left to save checkpoint step_20 in" in error
    assert f"{run / 'checkpoints' / 'step_10'}, is intact" in error
    assert "Traceback" not in done.stderr
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_10"]  # no partial left
    assert is_complete(checkpoints / "step_10")


def test_checkpoints_that_cannot_be_written_fail_before_step_one(
    tiny_config: Path, tmp_path: Path
) -> None:
    # `checkpoints` as a regular file: unwritable for root too, where chmod stops nothing
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("not a folder")
    result = CliRunner().invoke(cli, ["train", "-c", str(tiny_config), "--run-dir", str(run)])
    assert result.exit_code == 2, result.output
    assert f"{run / 'checkpoints'} (or a folder above it) exists but is not a directory" in (
        result.stderr
    )
    assert not (run / "metrics.jsonl").exists()  # failed before step 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_a_read_only_checkpoints_folder_fails_before_step_one(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints").chmod(0o555)
    try:
        result = CliRunner().invoke(cli, ["train", "-c", str(tiny_config), "--run-dir", str(run)])
    finally:
        (run / "checkpoints").chmod(0o755)
    assert result.exit_code == 2, result.output
    assert f"checkpoint folder {run / 'checkpoints'} is not writable" in result.stderr
    assert not (run / "metrics.jsonl").exists()
