"""Data sources: where the documents come from."""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from neat.errors import DataError
from neat.interfaces import Document

log = structlog.get_logger(__name__)

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


def _matches(file: Path, patterns: Sequence[str]) -> bool:
    """A pattern matches the file name or any trailing part of its path ('docs/*.md')."""
    posix = file.as_posix()
    return any(
        fnmatch.fnmatch(file.name, p)
        or fnmatch.fnmatch(posix, p)
        or fnmatch.fnmatch(posix, f"*/{p}")
        for p in patterns
    )


@dataclass
class ReadReport:
    """What reading skipped or repaired, so a run can say which files and lines."""

    undecodable: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        if self.undecodable:
            parts.append(
                f"{len(self.undecodable)} binary/non-UTF-8 file(s) skipped: "
                + ", ".join(self.undecodable[:5])
            )
        if self.replaced:
            parts.append(
                f"{len(self.replaced)} file(s) decoded with replacement characters: "
                + ", ".join(self.replaced[:5])
            )
        if self.bad_lines:
            parts.append(
                f"{len(self.bad_lines)} malformed line(s) skipped: " + ", ".join(self.bad_lines[:5])
            )
        return "; ".join(parts) or "no files or lines skipped"


class TextFileSource:
    """Plain-text files, one document per file, in a fixed (sorted) order.

    `on_decode_error` decides what a binary or non-UTF-8 file does: `skip` it (counted and
    named in `report`), decode it with replacement characters (`replace`), or stop (`fail`).
    """

    kind = "text"

    def __init__(
        self,
        paths: Sequence[str],
        encoding: str = "utf-8",
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        on_decode_error: str = "fail",
    ) -> None:
        if isinstance(paths, str | os.PathLike):  # a lone path, not a list of characters
            paths = [os.fspath(paths)]
        self.paths = [os.fspath(p) for p in paths]
        self.encoding = encoding
        self.include = list(include)
        self.exclude = list(exclude)
        self.on_decode_error = on_decode_error
        self.report = ReadReport()
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
                if (self.include and not _matches(file, self.include)) or _matches(
                    file, self.exclude
                ):
                    continue
                if file.resolve() not in seen:
                    seen.add(file.resolve())
                    files.append(file)
        if not files:
            raise DataError(
                "data.path lists no files after the include/exclude patterns; check data.path, "
                "data.include and data.exclude in the config"
            )
        return files

    def documents(self) -> Iterator[Document]:
        self.report = ReadReport()
        for file in self.files:
            text = self._read(file)
            if text is not None:
                yield Document(text=text, source=str(file))
        if self.report.undecodable or self.report.replaced:
            log.warning("data_files_not_utf8", summary=self.report.summary())

    def _read(self, file: Path) -> str | None:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read data file {file}: {exc}") from exc
        try:
            if b"\0" in raw[:8192]:  # NUL bytes: a binary file, whatever its bytes decode to
                raise UnicodeDecodeError(
                    self.encoding, raw, raw.index(b"\0"), raw.index(b"\0") + 1, "NUL byte"
                )
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            if self.on_decode_error == "skip":
                self.report.undecodable.append(str(file))
                return None
            if self.on_decode_error == "replace":
                self.report.replaced.append(str(file))
                return raw.replace(b"\0", b"").decode(self.encoding, errors="replace")
            raise DataError(
                f"data file {file} is binary or not valid {self.encoding} "
                f"(bad byte at offset {exc.start}); convert it, remove it from data.path, or set "
                "on_decode_error: skip (or replace) on the source"
            ) from exc

    def fingerprint(self) -> str:
        """Changes whenever any file's content, name or the file set changes (cache key)."""
        digest = hashlib.sha256(f"{self.kind}:{self.encoding}:{self.on_decode_error}\n".encode())
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


class JsonlSource(TextFileSource):
    """JSON lines, one document per line.

    With `format="text"` a document is the line's `text_field`. With `prompt_response` it is
    the prompt followed by the response, or a chat `messages` list; `metadata["segments"]`
    then marks which parts are trained on (the response, the assistant turns).
    """

    kind = "jsonl"

    def __init__(
        self,
        paths: Sequence[str],
        *,
        text_field: str = "text",
        prompt_field: str = "prompt",
        response_field: str = "response",
        messages_field: str = "messages",
        format: str = "text",
        on_bad_line: str = "skip",
        **kwargs: Any,
    ) -> None:
        super().__init__(paths, **kwargs)
        self.text_field = text_field
        self.prompt_field = prompt_field
        self.response_field = response_field
        self.messages_field = messages_field
        self.format = format
        self.on_bad_line = on_bad_line

    def documents(self) -> Iterator[Document]:
        self.report = ReadReport()
        for file in self.files:
            text = self._read(file)
            if text is None:
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                document = self._parse(line, f"{file}:{number}")
                if document is not None:
                    yield document
        if self.report.bad_lines or self.report.undecodable or self.report.replaced:
            log.warning("data_lines_skipped", summary=self.report.summary())

    def _parse(self, line: str, where: str) -> Document | None:
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a line must be a JSON object")
            segments = self._segments(record)
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"{where}: {exc.__class__.__name__}: {exc}"
            if self.on_bad_line == "fail":
                raise DataError(
                    f"malformed JSONL line {reason}; fix the line or set on_bad_line: skip"
                ) from exc
            self.report.bad_lines.append(where)
            return None
        text = "".join(part for part, _ in segments)
        metadata = {"segments": segments} if self.format == "prompt_response" else {}
        return Document(text=text, source=where, metadata=metadata)

    def _segments(self, record: dict[str, Any]) -> list[tuple[str, bool]]:
        """(text, trained on) pieces of one record."""
        if self.format == "text":
            return [(_string(record, self.text_field), True)]
        if self.messages_field in record:
            messages = record[self.messages_field]
            if not isinstance(messages, list) or not messages:
                raise ValueError(f"field {self.messages_field!r} must be a non-empty list")
            parts: list[tuple[str, bool]] = []
            for message in messages:
                role, content = _string(message, "role"), _string(message, "content")
                parts.append((f"<|{role}|>\n", False))
                parts.append((f"{content}\n", role == "assistant"))
            return parts
        return [
            (_string(record, self.prompt_field), False),
            (_string(record, self.response_field), True),
        ]

    def fingerprint(self) -> str:
        fields = (self.format, self.text_field, self.prompt_field, self.response_field)
        spec = f"{fields}:{self.messages_field}:{self.on_bad_line}"
        return hashlib.sha256(f"{super().fingerprint()}:{spec}".encode()).hexdigest()

    def describe(self) -> str:
        return "jsonl " + super().describe().removeprefix("text ")


def _string(record: Any, key: str) -> str:
    if not isinstance(record, dict):
        raise TypeError(f"expected an object with {key!r}, got {type(record).__name__}")
    if key not in record:
        raise KeyError(f"missing field {key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise TypeError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


class MixtureSource:
    """Several sources with weights. Reading it reads all parts in order (for fitting a
    tokenizer); the weights decide each part's share of training batches."""

    def __init__(self, parts: Sequence[tuple[Any, float]]) -> None:
        if not parts:
            raise DataError("data.sources is empty; list at least one source")
        self.parts = list(parts)

    def documents(self) -> Iterator[Document]:
        for source, _ in self.parts:
            yield from source.documents()

    def fingerprint(self) -> str:
        digest = hashlib.sha256(b"mixture\n")
        for source, weight in self.parts:
            digest.update(f"{source.fingerprint()}:{weight}\n".encode())
        return digest.hexdigest()

    def describe(self) -> str:
        return "; ".join(
            f"{source.describe()} (weight {weight:g})" for source, weight in self.parts
        )
