"""The index database: one SQLite file (WAL) holding the manifest, chunks, FTS5 and vectors.

SQLite is the source of truth; any in-memory vector index is a cache rebuilt from it. Every
change to one file is one `BEGIN IMMEDIATE` transaction, so a process killed at any moment
leaves each file either fully old or fully new, and the next build finishes the job (no
duplicates, no half-written updates, no deletion before the replacement exists).

The file is marked as neat's by `PRAGMA application_id` (`APPLICATION_ID`), set when the
schema is created. An existing file is identified before anything is written to it (before
even the switch to WAL): an empty database is made an index, one of neat's tables without the
id (made before the id existed) gets it on its first write, and anything else (another
application's database, a file that is not SQLite) is refused untouched.

Schema (version `SCHEMA_VERSION`):

- `meta(key, value)`: schema_version, generation, embedder (fingerprint), embedder_dim,
  last_build (JSON).
- `roots(id, path UNIQUE, kind)`: absolute resolved folders (`kind='dir'`) or single files
  (`kind='file'`, whose files are keyed relative to the file's folder). No root lies inside
  another one: a nested path maps to its enclosing root, so a file is never indexed twice.
- `files(root_id, path, size, mtime_ns, sha256, front_matter, chunker, chunk_count,
  indexed_at)`: the manifest; `chunker` names the chunking that produced the chunks.
- `bodies(root_id, path, body)`: the file's text without front matter, so training reads the
  same snapshot that search sees.
- `chunks(id, root_id, path, ordinal, heading_path, start_line, end_line, kind, text,
  content_hash)`.
- `chunks_fts(heading, body)`: a plain FTS5 table whose rowid is `chunks.id`, written in the
  same transaction as `chunks` (3.40, the stdlib SQLite we target, has no contentless-delete
  tables; a plain table costs a second copy of the text but deletes by rowid and checks by a
  simple join).
- `vectors(content_hash, vector)`: float32 embeddings keyed by chunk content, so unchanged
  text is never embedded twice; rows no chunk references are collected after each build.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from neat.errors import NeatError
from neat.files import FileLock, LockHeld
from neat.indexing.bm25 import Bm25Cache
from neat.indexing.records import HEADING_SEPARATOR, Chunk

__all__ = [
    "APPLICATION_ID",
    "FTS_TABLE",
    "SCHEMA_VERSION",
    "ChunkRow",
    "FileRow",
    "IndexDatabaseError",
    "IndexLockedError",
    "IndexStore",
    "RootRow",
    "compact_snippet",
    "fts_query",
    "heading_text",
    "match_expression",
    "posix_rel",
    "split_query",
]

SCHEMA_VERSION = 1
APPLICATION_ID = 0x6E656174  # "neat", in the SQLite header of every index
BUSY_TIMEOUT_MS = 10_000
MAX_QUERY_TERMS = 64
SNIPPET_CHARS = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('dir', 'file'))
);
CREATE TABLE IF NOT EXISTS files (
    root_id INTEGER NOT NULL REFERENCES roots(id),
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    front_matter TEXT NOT NULL,
    chunker TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    indexed_at REAL NOT NULL,
    PRIMARY KEY (root_id, path)
);
CREATE TABLE IF NOT EXISTS bodies (
    root_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (root_id, path)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    root_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    heading_path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    UNIQUE (root_id, path, ordinal)
);
CREATE INDEX IF NOT EXISTS chunks_by_hash ON chunks (content_hash);
CREATE TABLE IF NOT EXISTS vectors (content_hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
"""


FTS_TABLE = """
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (
    heading, body, tokenize = 'porter unicode61'
)"""


class IndexLockedError(NeatError):
    """Another process is writing the index; one writer at a time keeps the manifest true."""


class IndexDatabaseError(NeatError):
    """The index file is not a neat index this version can read."""


@dataclass(frozen=True, slots=True)
class RootRow:
    """An indexed root. Files are keyed relative to `base`: the folder itself, or the folder
    holding a single-file root."""

    id: int
    path: Path
    kind: str

    @property
    def base(self) -> Path:
        return self.path if self.kind == "dir" else self.path.parent

    def contains(self, path: Path) -> bool:
        return path == self.path or (self.kind == "dir" and self.path in path.parents)


@dataclass(frozen=True, slots=True)
class FileRow:
    """A manifest entry as stored."""

    root_id: int
    path: str
    size: int
    mtime_ns: int
    sha256: str
    chunker: str
    chunk_count: int
    indexed_at: float = 0.0  # seconds since the epoch; set by the store when written


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """A stored chunk with its root, for building search hits and chunk records."""

    id: int
    root: Path
    root_kind: str
    path: str
    ordinal: int
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int
    kind: str
    text: str
    content_hash: str

    @property
    def absolute_path(self) -> Path:
        base = self.root if self.root_kind == "dir" else self.root.parent
        return base / self.path


_TERM = re.compile(r"[^\W_]+")


def split_query(text: str) -> tuple[list[tuple[str, ...]], list[str]]:
    """(phrases, free words) of a query, lower-cased: `"borrow checker" rules` is
    ([("borrow", "checker")], ["rules"]). A quote without its closing one is ignored, so its
    words are free words."""
    parts = text.split('"')
    balanced = len(parts) % 2 == 1
    phrases: list[tuple[str, ...]] = []
    words: list[str] = []
    for i, part in enumerate(parts):
        found = tuple(t.lower() for t in _TERM.findall(part))
        inside = i % 2 == 1 and (balanced or i < len(parts) - 1)
        if inside and found:
            phrases.append(found)
        else:
            words.extend(found)
    return list(dict.fromkeys(phrases)), list(dict.fromkeys(words))


def fts_query(text: str) -> str | None:
    """A safe FTS5 MATCH expression for a query (`match_expression` of `split_query`)."""
    return match_expression(*split_query(text))


def match_expression(phrases: Sequence[tuple[str, ...]], words: Sequence[str]) -> str | None:
    """FTS5 MATCH text: every phrase required (its words adjacent and in order), the free
    words OR-ed with them so that they rank the rows; None when there is nothing to match.

    Only quoted words reach FTS5 (so `Vec<T>`, `AND`, `-x` or `*` cannot raise); OR with
    bm25 ranking is what the research benchmark measured (notes §3.3). bm25 scores every
    phrase of the expression, so `P AND (P OR w)` requires P and counts w.
    """
    quoted = ['"' + " ".join(p) + '"' for p in phrases][:MAX_QUERY_TERMS]
    free = [f'"{w}"' for w in words][: MAX_QUERY_TERMS - len(quoted)]
    if not quoted:
        return " OR ".join(free) or None
    required = " AND ".join(quoted)
    return f"{required} AND ({' OR '.join(quoted + free)})" if free else required


def heading_text(heading_path: Sequence[str]) -> str:
    return HEADING_SEPARATOR.join(heading_path)


def compact_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """Whitespace collapsed to single spaces, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _chunk_row(row: Sequence[Any]) -> ChunkRow:
    return ChunkRow(
        id=row[0],
        root=Path(row[1]),
        root_kind=row[2],
        path=row[3],
        ordinal=row[4],
        heading_path=tuple(json.loads(row[5])),
        start_line=row[6],
        end_line=row[7],
        kind=row[8],
        text=row[9],
        content_hash=row[10],
    )


_CHUNK_SELECT = """
SELECT c.id, r.path, r.kind, c.path, c.ordinal, c.heading_path, c.start_line, c.end_line,
       c.kind, c.text, c.content_hash
FROM chunks c JOIN roots r ON r.id = c.root_id
"""


def _writer_lock(db: Path) -> FileLock:
    """`<db>.lock`: one writer at a time, refused at once (never waited for) with who holds it."""
    path = db.with_name(db.name + ".lock")

    def held(exc: LockHeld) -> IndexLockedError:
        return IndexLockedError(
            f"index {db} is being written by another process (pid {exc.holder}, lock file "
            f"{path}); wait for it to finish, or stop that process and run again"
        )

    return FileLock(path, on_held=held)


_SQLITE_MAGIC = b"SQLite format 3\x00"
# Tables every neat index has had since schema version 1: how an index made before the
# application id existed is told from another application's database.
_NEAT_TABLES = frozenset({"meta", "roots", "files", "bodies", "chunks", "vectors"})


def _not_an_index(db: Path, why: str) -> IndexDatabaseError:
    return IndexDatabaseError(
        f"{db} is not a neat index ({why}); it was left untouched: pass another --db (or set "
        "indexing.db) to name the index file"
    )


def _identify(db: Path) -> None:
    """Returns when `db` is absent, empty or a neat index; raises IndexDatabaseError for
    anything else, having written nothing."""
    try:
        with db.open("rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise IndexDatabaseError(
            f"cannot read the index file {db} ({exc.strerror}); fix its permissions or pass "
            "another --db (or set indexing.db)"
        ) from exc
    if not header:
        return
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        raise _not_an_index(db, "it is not an SQLite database")
    stamped = int.from_bytes(header[68:72], "big")
    if stamped not in (0, APPLICATION_ID):
        raise _not_an_index(db, f"it belongs to another application, id {stamped:#x}")
    # A plain connection that only reads: no pragma, no journal mode change.
    conn = sqlite3.connect(db, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        names = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
        legacy = app_id == 0 and names >= _NEAT_TABLES
        if legacy:
            legacy = bool(
                conn.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone()
            )
    except sqlite3.DatabaseError as exc:
        if stamped == APPLICATION_ID:
            raise IndexDatabaseError(
                f"the neat index {db} is damaged beyond reading ({exc}); delete it and run "
                "`neat index build` again (it is rebuilt from the source files)"
            ) from exc
        raise IndexDatabaseError(
            f"{db} cannot be read as an SQLite database ({exc}); if it is a neat index, delete "
            "it (it is rebuilt from the source files), otherwise pass another --db (or set "
            "indexing.db)"
        ) from exc
    finally:
        conn.close()
    if app_id == APPLICATION_ID or legacy or (app_id == 0 and not names):
        return
    if app_id != 0:
        raise _not_an_index(db, f"it belongs to another application, id {app_id:#x}")
    shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
    raise _not_an_index(db, f"it holds other tables: {shown}")


class IndexStore:
    """All SQL of the index. Reads never take the writer lock and never block (WAL);
    `writer()` must wrap every sequence of writes."""

    def __init__(self, db: Path) -> None:
        self.db = Path(db).expanduser().resolve()
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self.lock = _writer_lock(self.db)
        self._counted: tuple[tuple[int, int], int] | None = None  # see _chunk_count
        _identify(self.db)
        try:
            self.conn = self._connect()
            self._bm25 = Bm25Cache(self.conn)
            self._ensure_schema()
            self._stamped = self._application_id() == APPLICATION_ID
        except sqlite3.DatabaseError as exc:
            if hasattr(self, "conn"):
                self.conn.close()
            raise IndexDatabaseError(
                f"{self.db} is not a readable neat index ({exc}); delete it (it is rebuilt "
                "from the source files) or set indexing.db to another file"
            ) from exc

    # -- connection, schema ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def reader(self) -> sqlite3.Connection:
        """A separate connection for a long read that must see one snapshot (WAL)."""
        return self._connect()

    def _ensure_schema(self) -> None:
        version = self._schema_version()
        if version is None:
            with self.transaction():
                if self._schema_version() is None:  # another process may have won the race
                    self._create_tables()
            version = self._schema_version()
        if version != SCHEMA_VERSION:
            raise IndexDatabaseError(
                f"{self.db} holds index schema version {version}, this neat reads version "
                f"{SCHEMA_VERSION}; delete the file and run `neat index build` again"
            )

    def _application_id(self) -> int:
        return int(self.conn.execute("PRAGMA application_id").fetchone()[0])

    def _create_tables(self) -> None:
        self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for statement in [*_SCHEMA.split(";"), FTS_TABLE]:
            if statement.strip():
                self.conn.execute(statement)
        self.conn.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
            [("schema_version", str(SCHEMA_VERSION)), ("generation", "0")],
        )

    def _schema_version(self) -> int | None:
        has_meta = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return None
        value = self.get_meta("schema_version")
        return int(value) if value is not None else None

    def close(self) -> None:
        self._bm25.close()
        self.conn.close()
        self.lock.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:  # some errors (disk full) already rolled it back
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the writer lock (IndexLockedError when another process has it). An index
        made before neat marked its files gets the mark with its first write."""
        self.lock.acquire()
        try:
            if not self._stamped:
                self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self._stamped = True
            yield
        finally:
            self.lock.release()

    # -- meta --------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Inside a transaction."""
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def bump_generation(self) -> None:
        """Inside a transaction: readers holding caches (the vector index) reload."""
        self.conn.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
        )

    # -- roots -------------------------------------------------------------------------------------

    def roots(self) -> list[RootRow]:
        rows = self.conn.execute("SELECT id, path, kind FROM roots ORDER BY path").fetchall()
        return [RootRow(i, Path(p), k) for i, p, k in rows]

    def find_root(self, path: Path) -> RootRow | None:
        """The root holding `path` (the root itself or a folder root above it)."""
        return next((r for r in self.roots() if r.contains(path)), None)

    def ensure_root(self, path: Path, kind: str) -> RootRow:
        """The root that stores `path`, created when none holds it. Roots inside the new
        one are folded into it (their files re-keyed), so no file has two index entries."""
        found = self.find_root(path)
        if found is not None:
            return found
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO roots (path, kind) VALUES (?, ?)", (str(path), kind)
            )
            assert cur.lastrowid is not None
            new = RootRow(cur.lastrowid, path, kind)
            for inner in self.roots():
                if inner.id != new.id and new.contains(inner.path):
                    self._fold_root(inner, new)
        return new

    def _fold_root(self, inner: RootRow, outer: RootRow) -> None:
        rel = inner.base.relative_to(outer.base).as_posix()
        prefix = "" if rel == "." else rel + "/"
        for table in ("files", "bodies", "chunks"):
            self.conn.execute(
                f"UPDATE {table} SET root_id = ?, path = ? || path WHERE root_id = ?",
                (outer.id, prefix, inner.id),
            )
        self.conn.execute("DELETE FROM roots WHERE id = ?", (inner.id,))
        self.bump_generation()

    def drop_root_if_empty(self, root: RootRow) -> bool:
        with self.transaction():
            if self.conn.execute("SELECT 1 FROM files WHERE root_id = ?", (root.id,)).fetchone():
                return False
            self.conn.execute("DELETE FROM roots WHERE id = ?", (root.id,))
            return True

    # -- manifest, files ---------------------------------------------------------------------------

    def manifest(self, root_id: int) -> dict[str, FileRow]:
        rows = self.conn.execute(
            "SELECT root_id, path, size, mtime_ns, sha256, chunker, chunk_count, indexed_at "
            "FROM files WHERE root_id = ?",
            (root_id,),
        )
        return {row[1]: FileRow(*row) for row in rows}

    def all_files(self) -> list[tuple[RootRow, FileRow]]:
        roots = {r.id: r for r in self.roots()}
        rows = self.conn.execute(
            "SELECT root_id, path, size, mtime_ns, sha256, chunker, chunk_count, indexed_at "
            "FROM files"
        ).fetchall()
        pairs = [(roots[row[0]], FileRow(*row)) for row in rows if row[0] in roots]
        return sorted(pairs, key=lambda p: (str(p[0].path), p[1].path))

    def touch_file(self, root_id: int, path: str, size: int, mtime_ns: int) -> None:
        """Same bytes, new stat: only the cheap prefilter (and the time it was taken) change."""
        with self.transaction():
            self.conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, indexed_at = ? "
                "WHERE root_id = ? AND path = ?",
                (size, mtime_ns, time.time(), root_id, path),
            )

    def replace_file(
        self,
        root_id: int,
        row: FileRow,
        front_matter: Mapping[str, Any],
        body: str,
        chunks: Sequence[Chunk],
        vectors: Mapping[str, bytes],
    ) -> int:
        """Swap a file's chunks, full-text rows, vectors and manifest entry in one
        transaction; returns how many old chunks it replaced."""
        with self.transaction():
            removed = self._delete_chunks(root_id, row.path)
            for ordinal, chunk in enumerate(chunks):
                cur = self.conn.execute(
                    "INSERT INTO chunks (root_id, path, ordinal, heading_path, start_line, "
                    "end_line, kind, text, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        root_id,
                        row.path,
                        ordinal,
                        json.dumps(list(chunk.heading_path), ensure_ascii=False),
                        chunk.start_line,
                        chunk.end_line,
                        chunk.kind,
                        chunk.text,
                        chunk.content_hash,
                    ),
                )
                self.conn.execute(
                    "INSERT INTO chunks_fts (rowid, heading, body) VALUES (?, ?, ?)",
                    (cur.lastrowid, heading_text(chunk.heading_path), chunk.text),
                )
            self._insert_vectors(vectors)
            self.conn.execute(
                "INSERT OR REPLACE INTO files (root_id, path, size, mtime_ns, sha256, "
                "front_matter, chunker, chunk_count, indexed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    root_id,
                    row.path,
                    row.size,
                    row.mtime_ns,
                    row.sha256,
                    json.dumps(dict(front_matter), ensure_ascii=False, default=str),
                    row.chunker,
                    len(chunks),
                    time.time(),
                ),
            )
            self.conn.execute(
                "INSERT OR REPLACE INTO bodies (root_id, path, body) VALUES (?, ?, ?)",
                (root_id, row.path, body),
            )
            self.bump_generation()
        return removed

    def remove_file(self, root_id: int, path: str) -> int:
        """Drop a file from the index in one transaction; returns its chunk count."""
        with self.transaction():
            removed = self._delete_chunks(root_id, path)
            self.conn.execute("DELETE FROM files WHERE root_id = ? AND path = ?", (root_id, path))
            self.conn.execute("DELETE FROM bodies WHERE root_id = ? AND path = ?", (root_id, path))
            self.bump_generation()
        return removed

    def _delete_chunks(self, root_id: int, path: str) -> int:
        self.conn.execute(
            "DELETE FROM chunks_fts WHERE rowid IN "
            "(SELECT id FROM chunks WHERE root_id = ? AND path = ?)",
            (root_id, path),
        )
        cur = self.conn.execute(
            "DELETE FROM chunks WHERE root_id = ? AND path = ?", (root_id, path)
        )
        return cur.rowcount

    def body(self, root_id: int, path: str) -> str | None:
        row = self.conn.execute(
            "SELECT body FROM bodies WHERE root_id = ? AND path = ?", (root_id, path)
        ).fetchone()
        return None if row is None else str(row[0])

    # -- chunks ------------------------------------------------------------------------------------

    def chunk_rows(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        wanted = list(dict.fromkeys(ids))
        found: dict[int, ChunkRow] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(f"{_CHUNK_SELECT} WHERE c.id IN ({marks})", part):
                found[row[0]] = _chunk_row(row)
        return found

    def file_chunks(self, root_id: int | None = None, path: str | None = None) -> list[ChunkRow]:
        """Chunks in file order (root, path, ordinal), optionally of one file."""
        where, args = "", ()  # type: str, tuple[Any, ...]
        if root_id is not None and path is not None:
            where, args = "WHERE c.root_id = ? AND c.path = ?", (root_id, path)
        rows = self.conn.execute(
            f"{_CHUNK_SELECT} {where} ORDER BY r.path, c.path, c.ordinal", args
        )
        return [_chunk_row(row) for row in rows]

    # -- vectors -----------------------------------------------------------------------------------

    def vector_hashes(self, hashes: Iterable[str]) -> set[str]:
        """Which of `hashes` already have a vector."""
        wanted = list(dict.fromkeys(hashes))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT content_hash FROM vectors WHERE content_hash IN ({marks})", part
            )
            found.update(row[0] for row in rows)
        return found

    def chunks_without_vectors(self, limit: int) -> list[tuple[str, tuple[str, ...], str]]:
        """(content_hash, heading_path, text) of up to `limit` distinct chunk contents that
        have no vector yet."""
        rows = self.conn.execute(
            "SELECT content_hash, heading_path, text FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM vectors v WHERE v.content_hash = c.content_hash) "
            "GROUP BY content_hash LIMIT ?",
            (limit,),
        )
        return [(h, tuple(json.loads(hp)), t) for h, hp, t in rows]

    def put_vectors(self, vectors: Mapping[str, bytes]) -> None:
        with self.transaction():
            self._insert_vectors(vectors)
            self.bump_generation()

    def _insert_vectors(self, vectors: Mapping[str, bytes]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO vectors (content_hash, vector) VALUES (?, ?)",
            vectors.items(),
        )

    def reset_vectors(self, fingerprint: str, dim: int) -> int:
        """A different embedder: every stored vector is void. Returns how many were dropped."""
        with self.transaction():
            dropped = self.conn.execute("DELETE FROM vectors").rowcount
            self.set_meta("embedder", fingerprint)
            self.set_meta("embedder_dim", str(dim))
            self.bump_generation()
        return dropped

    def collect_vectors(self) -> int:
        """Delete vectors no chunk references (after edits and removals)."""
        with self.transaction():
            cur = self.conn.execute(
                "DELETE FROM vectors WHERE content_hash NOT IN (SELECT content_hash FROM chunks)"
            )
        return cur.rowcount

    def load_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids int64, vectors float32 (n, dim)) of every chunk that has a vector."""
        rows = self.conn.execute(
            "SELECT c.id, v.vector FROM chunks c JOIN vectors v ON v.content_hash = c.content_hash"
            " ORDER BY c.id"
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.empty((len(rows), dim), dtype=np.float32)
        for i, (_, blob) in enumerate(rows):
            matrix[i] = np.frombuffer(blob, dtype=np.float32)
        return ids, matrix

    # -- search ------------------------------------------------------------------------------------

    def search_bm25(
        self, query: str, k: int, *, snippets: bool = True
    ) -> list[tuple[int, float, str]]:
        """(chunk id, score, snippet) best first; score is -bm25, so larger is better.

        Free words are scored from statistics cached per generation (`neat.indexing.bm25`,
        equal to FTS5's bm25()); phrases, and words the tokenizer splits, go to FTS5. Either
        way snippets are made for the `k` rows returned only (`snippets=False`: none, "" in
        their place; `snippets_for` makes them later for the hits actually shown).
        """
        phrases, words = split_query(query)
        if k <= 0 or not (phrases or words):
            return []
        with self._one_snapshot():
            free = self._informative_words(" ".join(words), phrases=bool(phrases))
            match = match_expression(phrases, free)
            if match is None:
                return []
            ranked = None if phrases else self._bm25_cached(free, k)
            if ranked is None:
                ranked = [
                    (int(i), float(s))
                    for i, s in self.conn.execute(
                        "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts "
                        "MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
                        (match, k),
                    )
                ]
            found = self._snippets(match, [i for i, _ in ranked]) if snippets else {}
        return [(i, s, found.get(i, "")) for i, s in ranked]

    def snippets_for(self, query: str, ids: Sequence[int]) -> dict[int, str]:
        """The snippets `search_bm25(query)` gives these chunks (those it matches)."""
        phrases, words = split_query(query)
        if not ids:
            return {}
        with self._one_snapshot():
            free = self._informative_words(" ".join(words), phrases=bool(phrases))
            match = match_expression(phrases, free)
            return {} if match is None else self._snippets(match, ids)

    def _snippets(self, match: str, ids: Sequence[int]) -> dict[int, str]:
        """snippet() of these rows only. In the ranking query FTS5 would make one for every
        matching row before the sort (most of a query's cost), and a `rowid IN` filter on a
        MATCH still evaluates the expression over every row; the rows' own text is enough."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self.conn.execute(
            f"SELECT rowid, heading, body FROM chunks_fts WHERE rowid IN ({marks})", wanted
        ).fetchall()
        made = self._bm25.snippets(match, rows)
        return {i: compact_snippet(snip) for i, snip in made.items()}

    def _bm25_cached(self, words: Sequence[str], k: int) -> list[tuple[int, float]] | None:
        """The FTS5 ranking of the OR of `words` from cached statistics; None when a word is
        not exactly one token (FTS5 would make it a phrase)."""
        tokens = self._bm25.tokens(words)
        if not all(len(t) == 1 for t in tokens):
            return None
        snapshot = self._bm25.snapshot(self.generation)
        return self._bm25.top(snapshot, [t[0] for t in tokens], k)

    @contextmanager
    def _one_snapshot(self) -> Iterator[None]:
        """One read transaction (WAL: one snapshot) around a query's reads, so the cached
        statistics, the generation that keys them and FTS5 all see the same index. Inside
        a transaction already (a writer searching), that one is the snapshot."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")  # read only: nothing to keep or undo

    def _informative_words(self, text: str, *, phrases: bool = False) -> list[str]:
        """The words of `text` without those in half of all chunks or more.

        FTS5's BM25 clamps a term's IDF to 1e-6 once it is in half the rows or more (notes
        §3.1), so such a word cannot change the ranking, yet its posting list (nearly every
        row) dominates the query's cost. A query made only of such words is kept whole, unless
        it has phrases, which then carry it. Document counts are cached per generation.
        """
        words = list(dict.fromkeys(w.lower() for w in _TERM.findall(text)))[:MAX_QUERY_TERMS]
        if len(words) < (1 if phrases else 2):
            return words
        with self._one_snapshot():
            snapshot = self._bm25.snapshot(self.generation)
            counts = self._bm25.doc_counts(snapshot, self._stems(words))
        kept = [w for w, n in zip(words, counts, strict=True) if 2 * n < snapshot.rows]
        return kept if kept or phrases else words

    def _chunk_count(self) -> int:
        """COUNT(*) of chunks, recounted only after a write: `PRAGMA data_version` moves on
        other connections' commits, `total_changes` on ours."""
        version = (
            int(self.conn.execute("PRAGMA data_version").fetchone()[0]),
            self.conn.total_changes,
        )
        if self._counted is None or self._counted[0] != version:
            self._counted = (version, self.count("chunks"))
        return self._counted[1]

    def _stems(self, words: Sequence[str]) -> list[str]:
        """Each word as the index's tokenizer stores it (porter); a word it splits is
        represented by its last token, one it drops by itself."""
        return [t[-1] if t else w for t, w in zip(self._bm25.tokens(words), words, strict=True)]

    # -- counts ------------------------------------------------------------------------------------

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def total_bytes(self) -> int:
        return int(self.conn.execute("SELECT COALESCE(SUM(size), 0) FROM files").fetchone()[0])

    def db_bytes(self) -> int:
        """The database file plus its write-ahead log."""
        paths = (self.db, self.db.with_name(self.db.name + "-wal"))
        return sum(p.stat().st_size for p in paths if p.exists())


def posix_rel(path: Path, base: Path) -> str:
    """`path` relative to `base`, POSIX style (the key files are stored under)."""
    return PurePosixPath(*path.relative_to(base).parts).as_posix()
