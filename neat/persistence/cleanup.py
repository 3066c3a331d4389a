"""What `neat clean` removes: debris of interrupted work, and more only when asked.

`plan_clean` only looks (it never deletes) and `apply_clean` deletes what a plan lists, so a
dry run and a real run remove exactly the same things. The planner is conservative:

- It never follows a symlink. The target itself is resolved once (the user named it), then the
  walk only descends real directories, so every path it plans lies inside the target. A
  symlink is listed only when it is itself a temporary leftover, and then only the link goes.
- Temporary leftovers (`.tmp-*`, and the tokenizer files' `.<name>.<pid>.tmp`) are kept while
  the process named by their pid is alive (a save, a cache build or a write in progress); one
  without a pid is kept for a minute after its last change (an atomic write of another process
  may be between create and rename).
- A `step_<N>` checkpoint is partial only when its state.json is missing or does not parse as
  a JSON object: state.json is written last, so that is cheap and decisive, and nothing is
  hashed. When in doubt (state.json unreadable for lack of permission, or a symlink) it stays.
- Complete checkpoints, `config.yaml`, `metrics.jsonl` and `log.jsonl` go only with their whole
  run, when `runs_older_than_days` asks for it, and never while a process holds the run's
  `.lock` (a training run in progress, however long since its last write); the `.lock` file
  itself is never removed (deleting a lock file another process may be opening would let
  two writers in). Token caches go only with `caches=True`.
- Version-control folders and Python environments (`.git`, a folder with `pyvenv.cfg` or
  `conda-meta/`) are not entered: their `__pycache__` and temp files are not neat's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from neat.errors import NeatError
from neat.files import lock_holder, pid_alive
from neat.persistence.manifest import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    STATE_FILE,
    TMP_PREFIX,
    step_of,
)

__all__ = ["CleanPlan", "Removal", "apply_clean", "format_bytes", "plan_clean"]

log = structlog.get_logger(__name__)

REASON_TMP = "temporary leftover of an interrupted write"
REASON_PARTIAL_CHECKPOINT = "partial checkpoint (no readable state.json)"
REASON_PYCACHE = "Python bytecode cache"
REASON_CACHE_ENTRY = "token cache entry"
REASON_TOKENIZER_CACHE = "cached tokenizer vocabulary"

RUN_MARKERS = (CONFIG_FILE, "metrics.jsonl")
TMP_GRACE_S = 60.0  # a pid-less `.tmp-*` younger than this may be a live atomic write

_REPLACED_PREFIX = f"{TMP_PREFIX}replaced-"  # the checkpointer's aside copy (see _publish)
_DAY_S = 86400.0
_NOT_ENTERED = frozenset({".git", ".hg", ".svn"})
_ENVIRONMENT_MARKERS = ("pyvenv.cfg", "conda-meta")
_CACHE_KEY = re.compile(r"[0-9a-f]{16,128}")  # TokenCache keys are sha256 hex digests
_TOKENIZER_CACHE = re.compile(r"(?:vocab|bpe)-.+\.json")
_DOT_TMP = re.compile(r"\..+\.(?P<pid>[0-9]+)\.tmp")  # `.<name>.<pid>.tmp`: tokenizer file writes


@dataclass(frozen=True)
class Removal:
    """One file, symlink or directory tree to delete; `bytes` counts its files and links."""

    path: Path
    bytes: int
    reason: str


@dataclass
class CleanPlan:
    """What `apply_clean` would delete, sorted by path; no entry lies inside another."""

    removals: list[Removal] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(removal.bytes for removal in self.removals)


def plan_clean(
    target: Path,
    *,
    caches: bool = False,
    cache_dir: Path | None = None,
    runs_older_than_days: float | None = None,
    now: float | None = None,
) -> CleanPlan:
    """List what cleaning `target` (a project folder, a `runs/` folder or a run) removes.

    Nothing is deleted. `caches` adds every entry of the token cache (`cache_dir`, default
    `neat.data.cache.default_cache_dir()`); `runs_older_than_days` adds whole run directories
    whose newest file is older than that many days. `now` (a Unix time) is for tests.
    """
    target = Path(target)
    if not target.exists():
        raise NeatError(f"nothing to clean: {target} does not exist")
    if not target.is_dir():
        raise NeatError(
            f"nothing to clean: {target} is not a directory; pass a project folder, a runs/ "
            "folder or a run directory"
        )
    if runs_older_than_days is not None and not runs_older_than_days >= 0:
        raise NeatError(
            f"the age of runs to remove must be 0 days or more, got {runs_older_than_days}"
        )
    max_age_s = None if runs_older_than_days is None else runs_older_than_days * _DAY_S
    planner = _Planner(time.time() if now is None else now, max_age_s)
    planner.walk(target.resolve())
    if caches:
        if cache_dir is None:
            from neat.data.cache import default_cache_dir  # the data package is heavier

            cache_dir = default_cache_dir()
        planner.plan_cache(Path(cache_dir).resolve())
    return CleanPlan(_outermost(planner.removals.values()))


def apply_clean(plan: CleanPlan) -> int:
    """Delete what `plan` lists and return the bytes freed.

    Symlinks are unlinked, never followed. An entry already gone is skipped; one that cannot
    be deleted (or whose folder has become reachable only through a symlink since it was
    planned) is logged and skipped, so one failure never stops the rest.
    """
    freed = 0
    for removal in plan.removals:
        path = removal.path
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            log.info("clean_already_gone", path=str(path))
            continue
        except OSError as exc:
            log.warning("clean_failed", path=str(path), reason=removal.reason, error=str(exc))
            continue
        parent = os.path.abspath(path.parent)
        if os.path.realpath(parent) != parent:
            log.warning(
                "clean_skipped",
                path=str(path),
                reason=removal.reason,
                error="its folder is now reached through a symlink; plan again",
            )
            continue
        try:
            if stat.S_ISDIR(mode):
                shutil.rmtree(path)  # refuses a symlink; fd-based, so it never follows one
            else:
                path.unlink()
        except OSError as exc:
            if not os.path.lexists(path):
                log.info("clean_already_gone", path=str(path))
            else:
                log.warning("clean_failed", path=str(path), reason=removal.reason, error=str(exc))
            continue
        freed += removal.bytes
        log.debug("clean_removed", path=str(path), bytes=removal.bytes, reason=removal.reason)
    return freed


def format_bytes(n: int) -> str:
    """`n` bytes for people: "512 B", "1.5 KiB", "3.2 GiB"."""
    if abs(n) < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(round(value, 1)) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"


class _Planner:
    def __init__(self, now: float, max_age_s: float | None) -> None:
        self.now = now
        self.max_age_s = max_age_s
        self.removals: dict[Path, Removal] = {}

    def walk(self, root: Path) -> None:
        """Classify `root` and everything under it, descending real directories only."""
        if self._handled(root, root.parent.name):
            return
        stack = [root]
        while stack:
            directory = stack.pop()
            try:
                with os.scandir(directory) as it:
                    names = [entry.name for entry in it]
            except OSError as exc:
                log.warning("clean_unreadable", path=str(directory), error=str(exc))
                continue
            for name in names:
                path = directory / name
                if not self._handled(path, directory.name) and _enterable(path):
                    stack.append(path)

    def plan_cache(self, root: Path) -> None:
        """Every token-cache entry and cached tokenizer file directly under `root`."""
        try:
            with os.scandir(root) as it:
                names = sorted(entry.name for entry in it)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("clean_unreadable", path=str(root), error=str(exc))
            return
        for name in names:  # lstat modes: a symlink is neither a dir nor a regular file
            path = root / name
            mode = _lmode(path)
            if mode is None:
                continue
            if _is_temporary(name):
                self._temporary(path, mode)  # a build of a live process is kept
            elif stat.S_ISDIR(mode) and _CACHE_KEY.fullmatch(name):
                self._add(path, _measure(path).size, REASON_CACHE_ENTRY)
            elif stat.S_ISREG(mode) and _TOKENIZER_CACHE.fullmatch(name):
                self._add(path, _measure(path).size, REASON_TOKENIZER_CACHE)

    def _handled(self, path: Path, parent_name: str) -> bool:
        """Plan `path` if it is debris; True when the walk must not enter it."""
        mode = _lmode(path)
        if mode is None:
            return True
        if _is_temporary(path.name):
            self._temporary(path, mode)  # kept or not, someone else's work: never entered
            return True
        if not stat.S_ISDIR(mode):
            return True
        if path.name == "__pycache__":
            self._add(path, _measure(path).size, REASON_PYCACHE)
            return True
        if parent_name == CHECKPOINTS_DIR and step_of(path) is not None:
            if _state_readable(path) is False:
                self._add(path, _measure(path).size, REASON_PARTIAL_CHECKPOINT)
            return True
        if self.max_age_s is not None and _is_run(path):
            return self._old_run(path)
        return False

    def _temporary(self, path: Path, mode: int) -> None:
        pid = _owner_pid(path.name)
        if pid is not None and pid_alive(pid):
            log.info("clean_kept_in_use", path=str(path), pid=pid)
            return
        scan = _measure(path)
        if pid is None and self.now - scan.newest < TMP_GRACE_S:
            log.info("clean_kept_recent", path=str(path))
            return
        if (
            path.name.startswith(_REPLACED_PREFIX)
            and stat.S_ISDIR(mode)
            and _recoverable_aside(path)
        ):
            # The only copy of a complete checkpoint; the next Checkpointer restores it.
            log.info("clean_kept_recoverable_checkpoint", path=str(path))
            return
        self._add(path, scan.size, REASON_TMP)

    def _old_run(self, path: Path) -> bool:
        assert self.max_age_s is not None
        scan = _measure(path)
        age_s = self.now - scan.newest
        holder = lock_holder(path / LOCK_FILE)
        if holder is not None:
            log.info("clean_kept_run_in_use", path=str(path), pid=holder)
            return False  # a run in progress: still cleaned inside
        if scan.live_tmp or age_s <= self.max_age_s:
            return False  # a young or running run: still cleaned inside
        days = self.max_age_s / _DAY_S
        reason = f"run unchanged for {age_s / _DAY_S:.1f} days (older than {days:g} days)"
        self._add(path, scan.size, reason)
        return True

    def _add(self, path: Path, size: int, reason: str) -> None:
        self.removals[path] = Removal(path=path, bytes=size, reason=reason)


@dataclass(frozen=True)
class _Scan:
    size: int  # bytes of every file and symlink, directories not counted
    newest: float  # newest mtime of a file or symlink (the directory's own if it has none)
    live_tmp: bool  # holds a `.tmp-*-<pid>` of a live process


def _measure(path: Path) -> _Scan:
    """Sizes and newest mtime under `path`, by lstat only: no symlink is followed."""
    try:
        top = os.lstat(path)
    except OSError:
        return _Scan(0, 0.0, False)
    if not stat.S_ISDIR(top.st_mode):
        return _Scan(top.st_size, top.st_mtime, False)
    size, newest, live_tmp = 0, None, False
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if _is_temporary(entry.name):
                pid = _owner_pid(entry.name)
                live_tmp = live_tmp or (pid is not None and pid_alive(pid))
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
            else:
                size += st.st_size
                newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
    return _Scan(size, top.st_mtime if newest is None else newest, live_tmp)


def _outermost(removals: Iterable[Removal]) -> list[Removal]:
    """Sorted by path, without entries inside another (their bytes would count twice)."""
    ordered = sorted(removals, key=lambda r: r.path)
    kept: list[Removal] = []
    planned: set[Path] = set()
    for removal in ordered:
        if not any(parent in planned for parent in removal.path.parents):
            kept.append(removal)
            planned.add(removal.path)
    return kept


def _lmode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None


def _enterable(path: Path) -> bool:
    mode = _lmode(path)
    if mode is None or not stat.S_ISDIR(mode) or path.name in _NOT_ENTERED:
        return False
    return not any(os.path.lexists(path / marker) for marker in _ENVIRONMENT_MARKERS)


def _is_run(path: Path) -> bool:
    """A run directory: config.yaml plus checkpoints/ or metrics.jsonl (not a checkpoint)."""
    config, metrics = (_lmode(path / name) for name in RUN_MARKERS)
    checkpoints = _lmode(path / CHECKPOINTS_DIR)
    if config is None or not stat.S_ISREG(config):
        return False
    return (checkpoints is not None and stat.S_ISDIR(checkpoints)) or (
        metrics is not None and stat.S_ISREG(metrics)
    )


def _state_readable(checkpoint: Path) -> bool | None:
    """True: state.json parses as an object; False: missing or garbage; None: cannot tell."""
    state = checkpoint / STATE_FILE
    try:
        mode = os.lstat(state).st_mode
    except FileNotFoundError:
        return False
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        return None  # not followed, so not judged: kept
    if not stat.S_ISREG(mode):
        return False
    try:
        meta = json.loads(state.read_bytes())
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    except OSError:
        return None
    return isinstance(meta, dict)


def _recoverable_aside(aside: Path) -> bool:
    """A `.tmp-replaced-step_N-<pid>` whose checkpoint is readable while `step_N` is not."""
    stem = aside.name.removeprefix(_REPLACED_PREFIX).rsplit("-", 1)[0]
    original = aside.parent / stem
    return _state_readable(aside) is not False and _state_readable(original) is not True


def _is_temporary(name: str) -> bool:
    return name.startswith(TMP_PREFIX) or _DOT_TMP.fullmatch(name) is not None


def _owner_pid(name: str) -> int | None:
    """The pid in a `.tmp-<what>-<pid>` name (checkpointer, token cache) or a `.<name>.<pid>.tmp`
    name (tokenizer files); None for a name without one (`tempfile.mkstemp`'s)."""
    dotted = _DOT_TMP.fullmatch(name)
    tail = dotted.group("pid") if dotted else name.rsplit("-", 1)[-1]
    if not (tail.isascii() and tail.isdigit()):
        return None
    pid = int(tail)
    return pid if pid > 0 else None
