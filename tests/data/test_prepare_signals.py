"""Signals during token-cache building with worker processes: `neat data prepare` in a
subprocess gets SIGTERM, SIGINT or SIGKILL while its workers tokenize; it exits promptly with
128 + the signal, leaves no process behind (workers, forkserver, resource tracker), and the
next prepare builds the entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import neat
from neat.data import train_bpe

NEAT_ROOT = Path(neat.__file__).resolve().parents[1]  # the child runs the neat under test

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc"
)

CONFIG = """\
name: signals
model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}
data: {type: text, path: corpus, tokenizer: {type: hf, path: tok.json}}
training: {max_steps: 1, batch_size: 2, device: cpu}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus that two workers take several seconds to tokenize, and its config."""
    root = tmp_path_factory.mktemp("signals")
    words = [f"w{i}x{i * 7 % 13}" for i in range(2000)]
    line = " ".join(words) + "\n"
    (root / "corpus").mkdir()
    for i in range(24):
        (root / "corpus" / f"{i:02d}.txt").write_text(f"{i} {line}" * 18, encoding="utf-8")
    train_bpe(iter([line * 5]), 400, ["<|endoftext|>"], 2).save(root / "tok.json")
    (root / "config.yaml").write_text(CONFIG, encoding="utf-8")
    return root


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def _prepare(root: Path, cache: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NEAT_CACHE_DIR": str(cache), "PYTHONPATH": str(NEAT_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "neat", "data", "prepare", "-c", "config.yaml", "--workers", "2"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_workers(proc: subprocess.Popen[bytes], cache: Path) -> set[int]:
    """The prepare's descendants once both workers run (forkserver, tracker, 2 workers)."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the workers never started"
        found = _descendants(proc.pid)
        if len(found) >= 4 and any(cache.glob(".tmp-*")):
            time.sleep(0.3)  # tasks in flight
            return _descendants(proc.pid)
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)],
    ids=["sigterm", "sigint", "sigkill"],
)
def test_signal_during_prepare_stops_every_process(
    setup: Path, tmp_path: Path, signum: int, code: int
) -> None:
    cache = tmp_path / "cache"
    proc = _prepare(setup, cache)
    family = _wait_for_workers(proc, cache)
    sent = time.monotonic()
    proc.send_signal(signum)
    assert proc.wait(timeout=10) == code
    # Stopping takes milliseconds; most of this is the interpreter's exit with torch loaded
    # (about 1.5 s on a small machine). Before, SIGTERM orphaned the workers for good.
    assert time.monotonic() - sent < 4
    if signum != signal.SIGKILL:
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "Traceback" not in err and "Interrupted: token cache building stopped" in err
        assert list(cache.iterdir()) == []  # the partial entry is gone
    deadline = time.monotonic() + 5
    while any(_running(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in family if _running(pid)] == []
    if signum == signal.SIGKILL:  # the next prepare cleans the dead build's folder and builds
        again = _prepare(setup, cache)
        assert again.wait(timeout=120) == 0, again.stderr.read() if again.stderr else ""
        assert [p.name.startswith(".tmp-") for p in cache.iterdir()] == [False]
