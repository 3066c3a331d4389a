"""Training on markdown documents through the index."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from neat.interfaces import Document

from .indexer import MarkdownIndexer

__all__ = ["MarkdownDataSource"]


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
        indexer: MarkdownIndexer,
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
