"""The records the indexer's parts pass between them: a parsed file, its chunks, a file's
manifest entry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CHUNKER_VERSION", "Chunk", "ChunkKind", "FileRecord", "ParsedFile", "search_text"]

# Bump when chunking changes what it produces: every file is then re-chunked on the next build.
# 2: no chunk is over max_chars (a long line is cut inside).
CHUNKER_VERSION = "2"

ChunkKind = Literal["prose", "code", "table", "mixed"]
HEADING_SEPARATOR = " > "


def search_text(heading_path: tuple[str, ...], text: str) -> str:
    """What BM25 and the embedder see: the heading path, then the text (the heading path is
    searched, so a query naming a section finds it)."""
    if not heading_path:
        return text
    return HEADING_SEPARATOR.join(heading_path) + "\n" + text


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of one markdown file.

    `path` is relative to the indexed root, POSIX style; lines are 1-based and inclusive, and
    count the file's own lines (front matter included), so an editor can jump to them.
    `heading_path` holds the headings from the top down to and including the chunk's own
    section heading (empty before the first heading). `text` is the markdown source of the
    chunk's lines (the heading line included when the chunk starts its section), or the
    part of them it holds when one line alone is longer than `max_chars`.
    """

    path: str
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int
    text: str
    kind: ChunkKind = "prose"

    @property
    def content_hash(self) -> str:
        """Keys embeddings: equal text under equal headings embeds once, whatever the file."""
        payload = "\x00".join((CHUNKER_VERSION, *self.heading_path, "\x01", self.text))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    @property
    def search_text(self) -> str:
        return search_text(self.heading_path, self.text)


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A markdown file read into front matter (parsed YAML; {} when absent or not a mapping)
    and chunks in file order. `body` is the text without the front matter block; `warnings`
    say what of the file was left out (front matter that could not or should not be loaded)."""

    path: str
    front_matter: dict[str, Any]
    body: str
    chunks: list[Chunk] = field(default_factory=list)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A file's manifest entry: (size, mtime_ns) is the cheap check, sha256 the authority."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
