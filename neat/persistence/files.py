"""Durable file operations: a checkpoint is only as safe as its fsyncs and its renames."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# Some filesystems (FUSE, some network mounts) cannot fsync a directory; that loses only
# the crash guarantee for the rename, so it is tolerated rather than failing the save.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF}


def fsync_file(path: Path) -> None:
    """Flush a file's data to the disk, so a power loss after the rename cannot empty it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (new files, renames) across a crash."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file: the only way to notice a truncated or bit-flipped tensor file."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Write JSON and fsync it. Raises TypeError/ValueError for values JSON cannot hold."""
    text = json.dumps(data, indent=2, default=_json_default)
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def copy_file(source: Path, target: Path) -> None:
    """Copy one file into a checkpoint and fsync it (a module-level seam tests can slow down)."""
    shutil.copyfile(source, target)
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


def _json_default(value: object) -> Any:
    # numpy scalars (a data loader's position, a metric) are common and lossless as Python
    # numbers; anything else would need pickle, so it is refused.
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
