"""Data sources: where the documents come from."""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from neat.errors import DataError
from neat.interfaces import Document

_BLOCK = 1 << 20  # hash files in 1 MiB blocks so a large corpus never sits in memory twice


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(top: Path) -> list[Path]:
    """Regular files under `top`, skipping hidden files and folders (.git, .DS_Store, ...)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        for name in filenames:
            path = Path(dirpath, name)
            if not _is_hidden(name) and path.is_file():
                found.append(path)
    return sorted(found)


def _expand(entry: str) -> list[Path]:
    """One `data.path` entry -> its files: a file, a folder (recursively) or a glob pattern."""
    path = Path(os.path.expanduser(entry))
    if path.is_file():
        return [path]
    if path.is_dir():
        return _walk(path)
    files: list[Path] = []
    for match in sorted(glob.glob(os.fspath(path), recursive=True)):
        files.extend(_walk(Path(match)) if os.path.isdir(match) else [Path(match)])
    return [f for f in files if f.is_file()]


class TextFileSource:
    """Plain-text files, one document per file, in a fixed (sorted) order."""

    def __init__(self, paths: Sequence[str], encoding: str = "utf-8") -> None:
        if isinstance(paths, str | os.PathLike):  # a lone path, not a list of characters
            paths = [os.fspath(paths)]
        self.paths = [os.fspath(p) for p in paths]
        self.encoding = encoding
        self.files = self._resolve()

    def _resolve(self) -> list[Path]:
        # Resolved once, up front: a typo in data.path fails before any work starts.
        files: list[Path] = []
        seen: set[Path] = set()
        for entry in self.paths:
            matched = _expand(entry)
            if not matched:
                raise DataError(
                    f"data path {entry!r} matches no files (cwd: {os.getcwd()}); "
                    "check data.path: it takes a file, a folder or a glob pattern such as "
                    "'corpus/**/*.txt' (hidden files are skipped)"
                )
            for file in matched:
                if file.resolve() not in seen:
                    seen.add(file.resolve())
                    files.append(file)
        if not files:
            raise DataError("data.path lists no files; check data.path in the config")
        return files

    def documents(self) -> Iterator[Document]:
        for file in self.files:
            yield Document(text=self._read(file), source=str(file))

    def _read(self, file: Path) -> str:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read data file {file}: {exc}") from exc
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"data file {file} is not valid {self.encoding} "
                f"(bad byte at offset {exc.start}); convert it to {self.encoding} "
                "or remove it from data.path"
            ) from exc

    def fingerprint(self) -> str:
        """Changes whenever any file's content, name or the file set changes (cache key)."""
        digest = hashlib.sha256(f"text:{self.encoding}\n".encode())
        for file in self.files:
            content = hashlib.sha256()
            with file.open("rb") as f:
                while block := f.read(_BLOCK):
                    content.update(block)
            digest.update(f"{file.resolve()}\0{content.hexdigest()}\n".encode())
        return digest.hexdigest()

    def describe(self) -> str:
        size = sum(f.stat().st_size for f in self.files)
        first = str(self.files[0]) + (
            f" (+{len(self.files) - 1} more)" if len(self.files) > 1 else ""
        )
        return f"text files: {first}, {len(self.files)} file(s), {size:,} bytes"
