"""Data sources: where the documents come from."""

from __future__ import annotations

import codecs
import fnmatch
import glob
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import Field

from neat.config import DataConfig, PathStr, SourceConfig, build, register_component
from neat.config.indexing import IndexingConfig
from neat.errors import DataError
from neat.interfaces import Document, IDataSource
from neat.interfaces.contexts import SourceContext

log = structlog.get_logger(__name__)

_BLOCK = 1 << 20  # hash files in 1 MiB blocks so a large corpus never sits in memory twice
PIECE_BYTES = 8 << 20  # a larger file is read and yielded in pieces of about this size
_SNIFF = 8192  # NUL bytes in a file's first bytes mark it binary


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


def _unreadable(file: Path, exc: OSError) -> DataError:
    """An unreadable file stops the run rather than being skipped like a binary one: a binary
    file is never text, but an unreadable one is usually text the run was meant to train on
    (a permission slip, a file removed mid-run), and skipping it would silently change the
    corpus (and its cache key) from one run to the next."""
    reason = exc.strerror or str(exc)
    return DataError(
        f"cannot read data file {file} ({reason}); make it readable by this user or leave it "
        "out of data.path (e.g. with data.exclude)"
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


class FileSourceConfig(SourceConfig):
    """Sources that read files: a file, a folder (recursively) or a glob, filtered by name."""

    path: PathStr | list[PathStr]
    include: list[str] = Field(default_factory=list, description="glob patterns to keep")
    exclude: list[str] = Field(default_factory=list, description="glob patterns to drop")
    on_decode_error: Literal["skip", "replace", "fail"] = Field(
        default="skip", description="a file that is binary or not UTF-8: skip, decode, or stop"
    )


class TextSourceConfig(FileSourceConfig):
    """Plain text, one document per file."""

    type: Literal["text"] = "text"


class JsonlSourceConfig(FileSourceConfig):
    """JSON lines, one document per line: a text field, prompt/response, or chat messages."""

    type: Literal["jsonl"] = "jsonl"
    text_field: str = "text"
    prompt_field: str = "prompt"
    response_field: str = "response"
    messages_field: str = "messages"
    on_bad_line: Literal["skip", "fail"] = Field(
        default="skip", description="a malformed line: skip it (counted) or stop"
    )


class TextFileSource:
    """Plain-text files, one document per file, in a fixed (sorted) order.

    `on_decode_error` decides what a binary or non-UTF-8 file does: `skip` it (counted and
    named in `report`), decode it with replacement characters (`replace`), or stop (`fail`).

    A file larger than `piece_bytes` is never read whole: it is checked in one streaming pass,
    then yielded as several documents of about `piece_bytes`, each cut after a line break
    (preferably one between two non-space characters, where subword pre-tokenizers split
    anyway); all but the last piece carry `metadata={"continued": True}`, which tells the token
    cache not to end the document there. Memory stays flat in the file's size.
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
        piece_bytes: int = PIECE_BYTES,
    ) -> None:
        if piece_bytes <= 0:
            raise ValueError(f"piece_bytes must be positive, got {piece_bytes}")
        if isinstance(paths, str | os.PathLike):  # a lone path, not a list of characters
            paths = [os.fspath(paths)]
        self.paths = [os.fspath(p) for p in paths]
        self.encoding = encoding
        self.include = list(include)
        self.exclude = list(exclude)
        self.on_decode_error = on_decode_error
        self.piece_bytes = piece_bytes
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
            previous: str | None = None
            for piece in self._texts(file):
                if previous is not None:  # one piece of look-ahead: is this the last one?
                    yield Document(text=previous, source=str(file), metadata={"continued": True})
                previous = piece
            if previous is not None:
                yield Document(text=previous, source=str(file))
        if self.report.undecodable or self.report.replaced:
            log.warning("data_files_not_utf8", summary=self.report.summary())

    def _size(self, file: Path) -> int:
        try:
            return file.stat().st_size
        except OSError as exc:
            raise _unreadable(file, exc) from exc

    def _texts(self, file: Path, *, whole_lines: bool = False) -> Iterator[str]:
        """The file's text: whole when small, else in pieces that each end after a line break
        (`whole_lines`: never inside a line, however long; otherwise a line longer than a
        piece is cut where the piece ends)."""
        if self._size(file) <= self.piece_bytes:
            text = self._read(file)
            if text is not None:
                yield text
            return
        errors = self._check(file)
        if errors is None:
            return
        decoder = codecs.getincrementaldecoder(self.encoding)(errors=errors)
        carry = ""
        try:
            with file.open("rb") as f:
                while block := f.read(self.piece_bytes):
                    if errors == "replace":
                        block = block.replace(b"\0", b"")
                    text = carry + decoder.decode(block)
                    cut = _cut(text, whole_lines)
                    if cut:
                        yield text[:cut]
                    carry = text[cut:]
                text = carry + decoder.decode(b"", final=True)
        except OSError as exc:
            raise _unreadable(file, exc) from exc
        except UnicodeDecodeError as exc:  # the file changed after it was checked
            raise DataError(f"data file {file} changed while it was read ({exc})") from exc
        if text:
            yield text

    def _check(self, file: Path) -> str | None:
        """Decode a large file once without keeping it: the errors mode to read it with, or
        None to skip it (the same policy as `_read`)."""
        decoder = codecs.getincrementaldecoder(self.encoding)()
        offset = 0
        try:
            with file.open("rb") as f:
                while block := f.read(self.piece_bytes):
                    if offset == 0 and b"\0" in block[:_SNIFF]:
                        at = block.index(b"\0")
                        raise UnicodeDecodeError(self.encoding, block, at, at + 1, "NUL byte")
                    decoder.decode(block)
                    offset += len(block)
                decoder.decode(b"", final=True)
        except OSError as exc:
            raise _unreadable(file, exc) from exc
        except UnicodeDecodeError as exc:
            return self._undecodable(file, offset + exc.start, exc)
        return "strict"

    def _read(self, file: Path) -> str | None:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise _unreadable(file, exc) from exc
        try:
            if b"\0" in raw[:_SNIFF]:  # NUL bytes: a binary file, whatever its bytes decode to
                raise UnicodeDecodeError(
                    self.encoding, raw, raw.index(b"\0"), raw.index(b"\0") + 1, "NUL byte"
                )
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            if self._undecodable(file, exc.start, exc) is None:
                return None
            return raw.replace(b"\0", b"").decode(self.encoding, errors="replace")

    def _undecodable(self, file: Path, offset: int, exc: UnicodeDecodeError) -> str | None:
        """Apply `on_decode_error` to a bad file: None to skip it, "replace" to decode it with
        replacement characters; DataError to stop."""
        if self.on_decode_error == "skip":
            self.report.undecodable.append(str(file))
            return None
        if self.on_decode_error == "replace":
            self.report.replaced.append(str(file))
            return "replace"
        raise DataError(
            f"data file {file} is binary or not valid {self.encoding} "
            f"(bad byte at offset {offset}); convert it, remove it from data.path, or set "
            "on_decode_error: skip (or replace) on the source"
        ) from exc

    def fingerprint(self) -> str:
        """Changes whenever any file's content, name or the file set changes (cache key)."""
        digest = hashlib.sha256(f"{self.kind}:{self.encoding}:{self.on_decode_error}\n".encode())
        for file in self.files:
            content = hashlib.sha256()
            try:
                with file.open("rb") as f:
                    while block := f.read(_BLOCK):
                        content.update(block)
            except OSError as exc:
                raise _unreadable(file, exc) from exc
            digest.update(f"{file.resolve()}\0{content.hexdigest()}\n".encode())
        if any(self._size(file) > self.piece_bytes for file in self.files):
            # Where pieces are cut can change a subword tokenization at the cut.
            digest.update(f"pieces:{self.piece_bytes}\n".encode())
        return digest.hexdigest()

    def describe(self) -> str:
        size = sum(self._size(f) for f in self.files)
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
            number = 0
            fields = _FieldCounts()
            for text in self._texts(file, whole_lines=True):  # pieces end after a line break
                for line in _lines(text):
                    number += 1
                    if not line.strip():
                        continue
                    document = self._parse(line, f"{file}:{number}", fields)
                    if document is not None:
                        yield document
            self._check_fields(file, fields)
        if self.report.bad_lines or self.report.undecodable or self.report.replaced:
            log.warning("data_lines_skipped", summary=self.report.summary())

    def _parse(self, line: str, where: str, fields: _FieldCounts) -> Document | None:
        record: Any = None
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a line must be a JSON object")
            fields.records += 1
            segments = self._segments(record)
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, _MissingField) and exc.record is record:
                fields.missing[exc.field] = fields.missing.get(exc.field, 0) + 1
                fields.keys.update(list(record))  # a mapping would add its values
                exc.option = self._option(exc.field)
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

    def _option(self, field: str) -> str:
        """The source option that names `field` (for messages that say what to change)."""
        options = ("text_field",) if self.format == "text" else ("prompt_field", "response_field")
        return next((o for o in options if getattr(self, o) == field), options[0])

    def _check_fields(self, file: Path, fields: _FieldCounts) -> None:
        """A field that no record (or few) of the file has is a config typo more often than
        bad data: say which field, which option names it, and which keys the records have."""
        for name, missing in fields.missing.items():
            option = f"data.sources[].{self._option(name)}"
            keys = ", ".join(repr(k) for k, _ in fields.keys.most_common(10)) or "none"
            if missing == fields.records:
                raise DataError(
                    f"no record of {file} has the field {name!r} ({option}); its records "
                    f"have the keys {keys}: set {option} to the field that holds the text"
                )
            if 2 * missing > fields.records:
                log.warning(
                    "jsonl_field_missing",
                    message=f"{missing} of {fields.records} records of {file} lack the field "
                    f"{name!r} ({option}) and are skipped; they have the keys {keys}",
                )

    def fingerprint(self) -> str:
        fields = (self.format, self.text_field, self.prompt_field, self.response_field)
        spec = f"{fields}:{self.messages_field}:{self.on_bad_line}"
        return hashlib.sha256(f"{super().fingerprint()}:{spec}".encode()).hexdigest()

    def describe(self) -> str:
        return "jsonl " + super().describe().removeprefix("text ")


def _lines(text: str) -> list[str]:
    """JSON lines end at "\\n" only (a "\\r" before it is dropped): `str.splitlines` would
    also cut at U+2028, U+2029, U+0085 or a form feed, all valid inside a JSON string."""
    lines = text.split("\n")
    if lines[-1] == "":  # the text ends with a line break: no line after it
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _cut(text: str, whole_lines: bool) -> int:
    """Where to end a piece of `text` (whose continuation is still unread): after the last line
    break between two non-space characters (where subword pre-tokenizers split anyway, so the
    cut changes no token), else after the last line break, else (unless `whole_lines`) at the
    end; 0 means keep reading."""
    end = len(text)
    at = text.rfind("\n")
    last_break = at + 1
    while at >= 0:
        if 0 < at < end - 1 and not text[at - 1].isspace() and not text[at + 1].isspace():
            return at + 1
        at = text.rfind("\n", 0, at)
    if last_break:
        return last_break
    return 0 if whole_lines else end


@dataclass
class _FieldCounts:
    """One file's records, and how many lacked each field (with the keys they had)."""

    records: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    keys: Counter[str] = field(default_factory=Counter)


class _MissingField(KeyError):
    def __init__(self, key: str, record: dict[str, Any]) -> None:
        super().__init__(key)
        self.field = key
        self.record = record
        self.option = ""

    def __str__(self) -> str:
        named = f" ({self.option})" if self.option else ""
        keys = ", ".join(repr(k) for k in list(self.record)[:10]) or "none"
        return f"missing field {self.field!r}{named}; the record has the keys {keys}"


def _string(record: Any, key: str) -> str:
    if not isinstance(record, dict):
        raise TypeError(f"expected an object with {key!r}, got {type(record).__name__}")
    if key not in record:
        raise _MissingField(key, record)
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


def _paths(path: str | list[str]) -> list[str]:
    return [path] if isinstance(path, str) else list(path)


def _file_options(cfg: FileSourceConfig) -> dict[str, Any]:
    return {"include": cfg.include, "exclude": cfg.exclude, "on_decode_error": cfg.on_decode_error}


def build_text_source(cfg: TextSourceConfig, ctx: SourceContext) -> TextFileSource:
    return TextFileSource(_paths(cfg.path), **_file_options(cfg))


def build_jsonl_source(cfg: JsonlSourceConfig, ctx: SourceContext) -> JsonlSource:
    return JsonlSource(
        _paths(cfg.path),
        text_field=cfg.text_field,
        prompt_field=cfg.prompt_field,
        response_field=cfg.response_field,
        messages_field=cfg.messages_field,
        format=ctx.format,
        on_bad_line=cfg.on_bad_line,
        **_file_options(cfg),
    )


def build_data_source(data: DataConfig, indexing: IndexingConfig) -> IDataSource:
    """The `data` section's source: its one source, or a weighted mixture of several."""
    ctx = SourceContext(format=data.format, indexing=indexing)
    parts: list[tuple[IDataSource, float]] = [
        (build("source", cfg, ctx), cfg.weight) for cfg in data.sources
    ]
    if len(parts) == 1:
        return parts[0][0]
    return MixtureSource(parts)


register_component("source", TextSourceConfig, build_text_source)
register_component("source", JsonlSourceConfig, build_jsonl_source)
