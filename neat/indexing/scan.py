"""Find the files to index under a set of roots (folders or single files).

The walk uses `os.scandir` (one `readdir` per folder, `stat` only for candidate files) and
never reads file contents: the indexer checks for binary and non-UTF-8 bytes when it reads a
file anyway, so unchanged files cost one `stat` per build.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neat.config.indexing import IndexingConfig
from neat.errors import DataError

__all__ = [
    "BINARY_SNIFF_BYTES",
    "ScanResult",
    "ScannedFile",
    "compile_globs",
    "content_skip_reason",
    "scan",
]

# Like git and grep: a NUL byte in the first 8 KB marks a file as binary.
BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True, slots=True)
class ScannedFile:
    """A candidate file. `root` is the resolved root it was found under (the file itself for a
    single-file root); `rel` its POSIX path below the root's folder; `path` the absolute path
    (a symlink keeps its own name, so `rel` stays stable)."""

    root: Path
    rel: str
    path: Path
    size: int
    mtime_ns: int


@dataclass(slots=True)
class ScanResult:
    """Files in sorted order, and what was left out and why (reason -> absolute paths)."""

    files: list[ScannedFile] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, path: Path | str) -> None:
        self.skipped.setdefault(reason, []).append(os.fspath(path))


def content_skip_reason(data: bytes) -> str | None:
    """Why a file's bytes cannot be indexed as markdown: "binary", "not_utf8", or None."""
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return "binary"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    return None


def _glob_to_regex(pattern: str) -> str:
    """A path glob as a regex: `*` and `?` stay inside one path segment, `**` spans segments
    (`**/` also matches no folder at all, as in gitignore)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def compile_globs(patterns: Iterable[str], *, path_globs: bool) -> re.Pattern[str] | None:
    """One regex matching any of `patterns` (None when there are none). Name globs use
    fnmatch rules; path globs keep `*` within a segment and support `**`."""
    parts = [
        _glob_to_regex(p.strip("/")) if path_globs else fnmatch.translate(p) for p in patterns if p
    ]
    if not parts:
        return None
    if path_globs:
        return re.compile("(?:" + "|".join(f"(?:{p})" for p in parts) + r")\Z")
    return re.compile("|".join(parts))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class _Walker:
    """One root's walk: filters, symlink policy and the visited set that ends loops."""

    def __init__(self, root: Path, config: IndexingConfig, result: ScanResult) -> None:
        self.root = root
        self.root_str = os.fspath(root)
        self.include = compile_globs(config.include, path_globs=False)
        self.exclude = compile_globs(config.exclude, path_globs=True)
        self.skip_hidden = config.skip_hidden
        self.skip_dirs = frozenset(config.skip_dirs)
        self.result = result
        self.visited: set[str] = {self.root_str}
        # Folder symlinks wait until every real folder was walked, so a tree reachable both
        # directly and through a link is indexed under its real path.
        self.deferred: list[tuple[str, str]] = []

    def run(self) -> None:
        self._walk(self.root_str, "")
        while self.deferred:
            link, rel = self.deferred.pop(0)
            target = os.path.realpath(link)
            if target in self.visited:
                self.result.skip("symlink_loop", link)
            else:
                self.visited.add(target)
                self._walk(link, rel)

    def _walk(self, folder: str, rel_folder: str) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            self.result.skip("unreadable", folder)
            return
        for entry in entries:
            name = entry.name
            if self.skip_hidden and name.startswith("."):
                continue
            rel = f"{rel_folder}/{name}" if rel_folder else name
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                self.result.skip("unreadable", entry.path)
                continue
            if is_link and not self._link_target_ok(entry.path):
                continue
            if is_dir:
                self._enter(entry.path, rel, name, is_link)
            elif self.include is None or self.include.match(name):
                self._add_file(entry, rel)

    def _link_target_ok(self, link: str) -> bool:
        if not os.path.exists(link):
            self.result.skip("symlink_broken", link)
            return False
        if not _inside(os.path.realpath(link), self.root_str):
            self.result.skip("symlink_outside", link)
            return False
        return True

    def _enter(self, path: str, rel: str, name: str, is_link: bool) -> None:
        if name in self.skip_dirs or (self.exclude is not None and self.exclude.match(rel)):
            return
        if is_link:
            self.deferred.append((path, rel))
            return
        real = os.path.realpath(path)
        if real in self.visited:
            self.result.skip("symlink_loop", path)
            return
        self.visited.add(real)
        self._walk(path, rel)

    def _add_file(self, entry: os.DirEntry[str], rel: str) -> None:
        if self.exclude is not None and self.exclude.match(rel):
            return
        try:
            st = entry.stat()
        except OSError:
            self.result.skip("unreadable", entry.path)
            return
        self.result.files.append(
            ScannedFile(self.root, rel, Path(entry.path), st.st_size, st.st_mtime_ns)
        )


def _scan_file(path: Path, result: ScanResult) -> None:
    """A root naming one file is taken as asked: include, exclude and hidden rules don't apply."""
    st = path.stat()
    result.files.append(ScannedFile(path, path.name, path, st.st_size, st.st_mtime_ns))


def scan(roots: Sequence[Path], config: IndexingConfig) -> ScanResult:
    """Files under `roots` that the index should hold, sorted by absolute path.

    `include` globs match file names; `exclude` globs match paths relative to the root
    (`*` within one folder, `**` across folders) and a folder they match is not entered, as
    in gitignore ("drafts/*" leaves out everything under drafts/). A root must exist
    (DataError otherwise). Symlinks are followed only when their target lies
    inside the root; a folder reached twice (a loop, or a link to a folder already walked) is
    walked once. Each file appears once even when roots overlap.
    """
    result = ScanResult()
    for given in roots:
        root = Path(given).expanduser().resolve()
        if root.is_file():
            _scan_file(root, result)
        elif root.is_dir():
            _Walker(root, config, result).run()
        else:
            raise DataError(
                f"indexing path {os.fspath(given)!r} does not exist (resolved to {root}); "
                "fix the path or remove it from indexing.paths"
            )
    unique = {f.path: f for f in result.files}
    result.files = [unique[p] for p in sorted(unique)]
    for paths in result.skipped.values():
        paths[:] = sorted(set(paths))
    return result
