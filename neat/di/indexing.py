"""Builder of the markdown data source (`data.sources[].type: markdown`).

Importing this module registers it (`neat.di.builders` imports it); the config class lives
in `neat.config.indexing`, the source in `neat.indexing`.
"""

from __future__ import annotations

from pathlib import Path

from neat.config.indexing import MarkdownSourceConfig
from neat.config.schema import ExperimentConfig
from neat.di.registry import register_builder
from neat.errors import DataError
from neat.indexing.embedders import build_embedder
from neat.indexing.indexer import MarkdownIndexer
from neat.indexing.source import MarkdownDataSource
from neat.interfaces import IDataSource

__all__ = ["build_markdown_source"]


def build_markdown_source(cfg: MarkdownSourceConfig, config: ExperimentConfig) -> IDataSource:
    """Index the source's folders (only what changed since the last build), then read the
    index. The embedder, when `indexing.embedder` is set, keeps the vectors current too."""
    roots = [Path(p) for p in ([cfg.path] if isinstance(cfg.path, str) else cfg.path)]
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        raise DataError(
            f"data source markdown: {', '.join(missing)} not found; fix data.sources[].path"
        )
    indexer = MarkdownIndexer(
        Path(cfg.db or config.indexing.db),
        config.indexing,
        embedder=build_embedder(config.indexing.embedder),
    )
    source = MarkdownDataSource(
        indexer, roots, unit=cfg.unit, reindex_interval=cfg.reindex_interval
    )
    source.refresh()
    if next(iter(source.documents()), None) is None:
        where = ", ".join(str(r) for r in roots)
        raise DataError(
            f"data source markdown: no markdown files under {where} (indexing.include is "
            f"{config.indexing.include}); add files or change indexing.include"
        )
    return source


register_builder("source", "markdown", build_markdown_source)
