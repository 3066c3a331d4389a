"""kill -9 in the middle of a save: the previous checkpoint survives and the debris is swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

import neat
from neat.interfaces import TrainState
from neat.persistence import Checkpointer

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
