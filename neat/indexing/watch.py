"""Keep an index current as files change, through `watchfiles` (OS file events, debounced).

Editors save by writing a temporary file and renaming it over the original, which fires
several events per save; the debounce gathers them into one update, and the update itself
re-checks every file by size, mtime and hash, so a missed or duplicated event costs nothing.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import watchfiles

from neat.errors import NeatError

from .indexer import MarkdownIndexer

__all__ = ["watch_and_index"]


def _relevant(indexer: MarkdownIndexer) -> Any:
    """A watchfiles filter: files the index reads (or any deletion, which may be a folder),
    never the index's own database files."""
    db = str(Path(indexer.db).resolve())
    include = list(indexer.config.include)

    def keep(change: watchfiles.Change, path: str) -> bool:
        if path.startswith(db):  # the .db, -wal, -shm and .lock files
            return False
        if indexer.config.skip_hidden and any(
            part.startswith(".") for part in Path(path).parts[1:]
        ):
            return False
        name = Path(path).name
        return change == watchfiles.Change.deleted or any(
            fnmatch.fnmatch(name, pattern) for pattern in include
        )

    return keep


def watch_and_index(
    indexer: MarkdownIndexer,
    roots: Sequence[Path],
    *,
    debounce_ms: int = 500,
    stop_event: threading.Event | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the build report of each update, until Ctrl-C or `stop_event` is set.

    A failed update (e.g. another process holds the writer lock) is reported with an
    `error` key and retried at the next change.
    """
    for _changes in watchfiles.watch(
        *roots,
        watch_filter=_relevant(indexer),
        debounce=debounce_ms,
        step=50,
        stop_event=stop_event,
        raise_interrupt=False,
        yield_on_timeout=False,
    ):
        try:
            yield dict(indexer.build(roots))
        except NeatError as exc:
            yield {"error": str(exc)}
