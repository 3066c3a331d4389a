"""File helpers every layer shares: atomic writes, fsync, hashes, pid liveness, a lock file.

Standard library only, so the lowest packages (data, indexing, persistence) can use it. A
crash between two writes must leave either the old file or the new one, never half of one:
every write here goes to a temporary file in the same folder, is fsynced, then renamed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "FILE_MODE",
    "FileLock",
    "LockHeld",
    "fsync_dir",
    "fsync_file",
    "lock_holder",
    "pid_alive",
    "sha256_file",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

# Files a run writes are readable by everyone, like the files of any other tool
# (mkstemp would otherwise leave them 0600).
FILE_MODE = 0o644

# Some filesystems (FUSE, some network mounts) cannot fsync a directory; that loses only
# the crash guarantee for the rename, so it is tolerated rather than failing the write.
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
    """Hex sha256 of a file: the only way to notice a truncated or bit-flipped file."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Write `data` to `path` through a fsynced temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, *, mode: int = FILE_MODE) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def write_json_atomic(
    path: Path, data: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> None:
    """JSON (numpy scalars as plain numbers) written atomically. Raises TypeError/ValueError
    for values JSON cannot hold, before anything is written."""
    text = json.dumps(
        data, indent=indent, sort_keys=sort_keys, ensure_ascii=False, default=_json_default
    )
    write_text_atomic(path, text + "\n")


def _json_default(value: object) -> Any:
    # numpy scalars (a data loader's position, a metric) are common and lossless as Python
    # numbers; anything else would need pickle, so it is refused.
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours included). A pid owned by another user
    counts as alive; an impossible pid (0, negative, too large) as dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):
        return False
    except OSError:
        return True  # EPERM: it exists, owned by someone else
    return True


class LockHeld(Exception):
    """Another process holds the lock; `holder` is its pid as written in the lock file."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by process {holder}")
        self.path = path
        self.holder = holder


def lock_holder(path: Path) -> str | None:
    """The pid (as written in the file) of the process holding the `FileLock` at `path`, or
    None when nobody does. Looks without taking the lock for longer than the probe and
    without creating or writing the file, so cleaners and early checks can ask safely."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file (or unreadable): nobody holds it through FileLock
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class FileLock:
    """An exclusive, non-blocking `flock` on a lock file that holds the owner's pid.

    flock locks belong to the open file, so a second opener fails even inside the same
    process; the kernel drops the lock when the holder dies, so no stale lock survives
    kill -9. Re-entrant: nested `acquire`s need as many `release`s. `on_held` turns a
    held lock into the caller's own error (which names what is locked and what to do).
    """

    def __init__(self, path: Path, on_held: Callable[[LockHeld], Exception] | None = None) -> None:
        self.path = path
        self._on_held = on_held
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            self._depth += 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            held = LockHeld(self.path, holder)
            raise (self._on_held(held) if self._on_held else held) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd, self._depth = fd, 1

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth == 0:
            self.close()

    def close(self) -> None:
        """Let go of the lock whatever the nesting depth."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd, self._depth = None, 0

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
