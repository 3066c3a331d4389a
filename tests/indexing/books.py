"""Shared builders for the indexing tests."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from neat.config.indexing import IndexingConfig
from neat.indexing import MarkdownIndexer

RUST_BOOK = Path(__file__).resolve().parents[1] / "data" / "rust-book"


def book_index(root: Path, chapters: Sequence[str]) -> Path:
    """A real BM25 index (SQLite beside `root`) of these Rust book chapters, copied to `root`."""
    for name in chapters:
        shutil.copy(RUST_BOOK / name, root / name)
    path = root.parent / f"{root.name}.db"
    with MarkdownIndexer(path, IndexingConfig()) as indexer:
        indexer.build([root])
    return path
