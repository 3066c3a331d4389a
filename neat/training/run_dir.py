"""The run directory: where a run's config, tokenizer, metrics, logs and checkpoints live.

One writer at a time: a training run holds `<run_dir>/.lock` (an flock, dropped by the
kernel when the process dies) from before its first write to its end, so a second `neat
train` on the same directory cannot interleave metrics, mix checkpoints of two seeds or let
its retention delete the other's checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from neat.config.loader import dump_config
from neat.config.schema import ExperimentConfig
from neat.errors import NeatError
from neat.files import FILE_MODE, FileLock, lock_holder, write_text_atomic
from neat.interfaces import ITokenizer
from neat.persistence.manifest import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    STATE_FILE,
    STEP_PREFIX,
    TMP_PREFIX,
    TOKENIZER_FILE,
)

__all__ = [
    "RunDirError",
    "check_run_dir_free",
    "has_checkpoint",
    "latest_run_dir",
    "new_run_dir",
    "run_dir_lock",
    "write_run_files",
]


class RunDirError(NeatError):
    """The run directory is in use by another process, or cannot be written."""


def new_run_dir(name: str, root: Path | None = None) -> Path:
    """`runs/<name>-<timestamp>` under the current folder (never an existing one)."""
    root = root or Path.cwd() / "runs"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{_slug(name)}-{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{_slug(name)}-{stamp}-{suffix}"
    return candidate


def latest_run_dir(name: str, root: Path | None = None) -> Path | None:
    """The newest `runs/<name>-*` that holds a complete checkpoint (for `--resume auto`)."""
    root = root or Path.cwd() / "runs"
    if not root.is_dir():
        return None
    runs = [p for p in root.glob(f"{_slug(name)}-*") if has_checkpoint(p)]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def has_checkpoint(run_dir: Path) -> bool:
    """A cheap look (a `step_<N>/state.json` exists); loading verifies every file's hash."""
    folder = run_dir / CHECKPOINTS_DIR
    return folder.is_dir() and any(folder.glob(f"{STEP_PREFIX}*/{STATE_FILE}"))


def check_run_dir_free(run_dir: Path) -> None:
    """Fail early, before any checkpoint is read or data prepared, when another process
    trains in `run_dir`; `run_dir_lock` is what actually keeps a second writer out."""
    holder = lock_holder(run_dir / LOCK_FILE)
    if holder is not None:
        raise _in_use(run_dir, holder)


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, writer: bool = True) -> Iterator[None]:
    """Hold `<run_dir>/.lock` for the block: created (with the folder) before anything else
    is written. `writer=False` (ranks other than 0 under torchrun) locks nothing."""
    if not writer:
        yield
        return
    _make_dir(run_dir)
    lock = FileLock(run_dir / LOCK_FILE, on_held=lambda held: _in_use(run_dir, held.holder))
    try:
        lock.acquire()  # a held lock raises RunDirError (on_held)
    except OSError as exc:
        raise RunDirError(
            f"run directory {run_dir} is not writable ({exc.strerror or exc}); fix its "
            "permissions or choose another --run-dir"
        ) from None
    try:
        yield
    finally:
        lock.release()


def write_run_files(
    run_dir: Path, config: ExperimentConfig, tokenizer: ITokenizer
) -> dict[str, Path]:
    """Write config.yaml and tokenizer.json; both are also copied into every checkpoint.

    First checks that checkpoints can be written at all: a read-only folder must fail
    before step 1, not at the first save after minutes of training.
    """
    _make_dir(run_dir)
    _check_writable(run_dir / CHECKPOINTS_DIR)
    config_path = run_dir / CONFIG_FILE
    write_text_atomic(config_path, dump_config(config))
    tokenizer_path = run_dir / TOKENIZER_FILE
    tokenizer.save(tokenizer_path)
    os.chmod(tokenizer_path, FILE_MODE)  # a tokenizer's own writer may follow the umask
    return {CONFIG_FILE: config_path, TOKENIZER_FILE: tokenizer_path}


def _in_use(run_dir: Path, holder: str) -> RunDirError:
    return RunDirError(
        f"run directory {run_dir} is in use by another training run (process {holder} holds "
        f"{run_dir / LOCK_FILE}); wait for it to finish or stop it, or choose another --run-dir"
    )


def _make_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunDirError(
            f"{folder} (or a folder above it) exists but is not a directory; move it away "
            "or choose another --run-dir"
        ) from None
    except OSError as exc:
        raise RunDirError(
            f"cannot create {folder} ({exc.strerror or exc}); fix the permissions of the "
            "folder above it or choose another --run-dir"
        ) from None


def _check_writable(folder: Path) -> None:
    """Create `folder` and a file in it (the only test that also holds for read-only
    mounts and ACLs, where permission bits say nothing)."""
    _make_dir(folder)
    probe = folder / f"{TMP_PREFIX}write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(
            f"checkpoint folder {folder} is not writable ({exc.strerror or exc}); fix its "
            "permissions or choose another --run-dir"
        ) from None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
