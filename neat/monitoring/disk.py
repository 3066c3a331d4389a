"""Telling a full disk apart from other write failures.

A monitor that fails for its own reasons is detached and the run goes on; a full disk is
different: every later write (the next checkpoint included) would fail too, so the run stops
with one message while the checkpoints saved so far are intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from neat.errors import DiskFullError

__all__ = ["DISK_FULL_ERRNOS", "append_whole", "disk_full_error", "is_disk_full"]

# ENOSPC: no space left; EDQUOT: quota exceeded; EFBIG: over the file size limit (ulimit -f).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_error(path: Path | str, exc: OSError) -> DiskFullError:
    reason = exc.strerror or str(exc)
    return DiskFullError(
        f"cannot write {path}: {reason} (the disk, quota or file size limit is full); the "
        "checkpoints saved so far are intact: free some space, then continue the run with "
        "--resume auto"
    )


def append_whole(fd: int, data: bytes) -> None:
    """Append `data` to the file open at `fd`, or nothing of it: a write the disk cut short
    is taken back, so a full disk never leaves half a line for the next reader to trip on."""
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise
