"""Checkpoint-directory file operations that neat/files.py does not already provide.

The durable primitives (atomic writes, fsync, sha256) live in `neat.files`; this module keeps
the copy and removal helpers the checkpointer calls through module attributes, so tests can
slow a copy down to kill a process mid-save.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import structlog

from neat.errors import CheckpointError
from neat.files import FILE_MODE, fsync_file

log = structlog.get_logger(__name__)


def copy_file(source: Path, target: Path) -> None:
    """Copy one file into a checkpoint and fsync it (a module-level seam tests can slow down)."""
    shutil.copyfile(source, target)
    os.chmod(target, FILE_MODE)  # copyfile creates with the umask (0600 under umask 077)
    fsync_file(target)


def remove_tree(path: Path, reason: str) -> bool:
    """Delete a directory, logging instead of raising: cleanup must never fail a training run."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.warning("checkpoint_delete_failed", path=str(path), reason=reason, error=str(exc))
        return False
    log.info("checkpoint_dir_removed", path=str(path), reason=reason)
    return True


def remove_tree_quietly(path: Path) -> None:
    """Best-effort removal of a half-written directory while another error propagates."""
    with contextlib.suppress(OSError):
        shutil.rmtree(path)


def check_out_free(out: Path) -> None:
    """--out names a new folder: nothing is ever written into an existing one."""
    if out.exists():
        raise CheckpointError(
            f"--out {out} already exists; choose a new folder (nothing is written into an "
            "existing one)"
        )


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A hidden folder beside `out`, renamed to `out` when the block succeeds: a failed
    conversion leaves nothing half-written under the name the user asked for."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
