"""Training on markdown documents through the index."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, NonNegativeInt

from neat.config import PathStr, SourceConfig, register_component
from neat.errors import DataError
from neat.interfaces import Document, IDocumentIndexer
from neat.interfaces.contexts import SourceContext

from .embedders import build_embedder
from .indexer import MarkdownIndexer

__all__ = ["MarkdownDataSource", "MarkdownSourceConfig", "build_markdown_source"]


class MarkdownSourceConfig(SourceConfig):
    """Trains on markdown documents through the index (`neat.indexing.MarkdownDataSource`).

    The source indexes `path` into `db` (the `indexing.db` when unset) before reading, so the
    index and the training stream agree. `unit: file` gives one document per file (front matter
    dropped); `unit: chunk` one per chunk, preceded by its heading path. With
    `reindex_interval: N`, a running training re-indexes every N steps; changes enter the
    training stream at the next epoch boundary.
    """

    type: Literal["markdown"] = "markdown"
    path: PathStr | list[PathStr]
    db: PathStr | None = Field(default=None, description="default: indexing.db")
    unit: Literal["file", "chunk"] = "file"
    reindex_interval: NonNegativeInt = Field(
        default=0, description="re-index every N training steps (0: never)"
    )


class MarkdownDataSource:
    """Implements IDataSource: the documents under `roots`, as the index holds them.

    Reading goes through the index (not the files), so training sees one consistent
    snapshot, and the token cache keys on the index's content fingerprint: an unchanged
    corpus is never tokenized twice. `refresh()` brings the index up to date with the files;
    with `reindex_interval` > 0 a running training calls it every that many steps
    (`neat.data.refresh`).
    """

    kind = "markdown"

    def __init__(
        self,
        indexer: IDocumentIndexer,
        roots: Sequence[Path],
        *,
        unit: Literal["file", "chunk"] = "file",
        reindex_interval: int = 0,
    ) -> None:
        self.indexer = indexer
        self.roots = [Path(r) for r in roots]
        self.unit = unit
        self.reindex_interval = reindex_interval

    def refresh(self) -> dict[str, Any]:
        """Re-index the roots (only changed files are read again); the build report."""
        return dict(self.indexer.build(self.roots))

    def documents(self) -> Iterator[Document]:
        yield from self.indexer.documents(self.unit, roots=self.roots)

    def fingerprint(self) -> str:
        text = f"{self.kind}:{self.unit}:{self.indexer.fingerprint(roots=self.roots)}"
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> str:
        roots = ", ".join(str(r) for r in self.roots)
        return f"markdown ({self.unit}s) from {roots} via the index {self.indexer.db}"


def build_markdown_source(cfg: MarkdownSourceConfig, ctx: SourceContext) -> MarkdownDataSource:
    """Index the source's folders (only what changed since the last build), then read the
    index. The embedder, when `indexing.embedder` is set, keeps the vectors current too."""
    roots = [Path(p) for p in ([cfg.path] if isinstance(cfg.path, str) else cfg.path)]
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        raise DataError(
            f"data source markdown: {', '.join(missing)} not found; fix data.sources[].path"
        )
    indexing = ctx.indexing
    indexer = MarkdownIndexer(
        Path(cfg.db or indexing.db), indexing, embedder=build_embedder(indexing.embedder)
    )
    source = MarkdownDataSource(
        indexer, roots, unit=cfg.unit, reindex_interval=cfg.reindex_interval
    )
    source.refresh()
    if next(iter(source.documents()), None) is None:
        where = ", ".join(str(r) for r in roots)
        raise DataError(
            f"data source markdown: no markdown files under {where} (indexing.include is "
            f"{indexing.include}); add files or change indexing.include"
        )
    return source


register_component("source", MarkdownSourceConfig, build_markdown_source)
