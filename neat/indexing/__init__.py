"""The markdown document indexer: parse, chunk, store (SQLite + FTS5), search, keep current.

`MarkdownIndexer` implements `IDocumentIndexer` (roles in `neat.interfaces`). Importing this
package loads neither torch nor sentence-transformers: an embedder loads its model on first
use (`neat.indexing.embedders`).
"""

from neat.indexing.indexer import MarkdownIndexer
from neat.indexing.markdown import parse_markdown
from neat.indexing.records import CHUNKER_VERSION, Chunk, FileRecord, ParsedFile, search_text
from neat.indexing.scan import ScannedFile, ScanResult, scan
from neat.indexing.source import MarkdownDataSource
from neat.indexing.store import IndexDatabaseError, IndexLockedError

__all__ = [
    "CHUNKER_VERSION",
    "Chunk",
    "FileRecord",
    "IndexDatabaseError",
    "IndexLockedError",
    "MarkdownDataSource",
    "MarkdownIndexer",
    "ParsedFile",
    "ScanResult",
    "ScannedFile",
    "parse_markdown",
    "scan",
    "search_text",
]
