"""`neat index check`: the index against itself and against the files on disk, and repair.

Two questions, answered apart. *Damage*: does the database hold together (SQLite's
integrity_check, FTS5's own check, full-text rows vs chunks, chunks vs the manifest)? Only a
crash of the disk or a write behind neat's back causes it. *Staleness*: does the manifest still
describe the files (new, changed, removed, excluded, chunked or embedded another way)? An
interrupted build or any edit since the last one causes it, and the next build fixes it.

Repair rebuilds the full-text table, drops chunks of no file, makes damaged files re-read,
then runs a build over every root, which brings staleness up to date too.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from neat.config.indexing import IndexingConfig
from neat.files import sha256_file
from neat.indexing.embedders import embedder_fingerprint
from neat.indexing.scan import ScannedFile, content_skip_reason, scan
from neat.indexing.store import (
    FTS_TABLE,
    FileRow,
    IndexDatabaseError,
    IndexStore,
    heading_text,
    posix_rel,
)
from neat.interfaces import IEmbedder

__all__ = ["DAMAGE_KINDS", "check_index", "is_damage", "stat_unchanged"]

# A file modified this close to (or after) the moment it was indexed may have changed again
# within one mtime tick (coarse on some file systems: 1-2 s), so its stat is not trusted and
# its bytes are hashed again: git's "racily clean" entries (Documentation/technical/racy-git).
_RACY_WINDOW_S = 2.0

# What `check(repair=True)` does about each kind of problem.
_REPAIRS = {
    "integrity": "full-text index rebuilt",
    "fts_mismatch": "full-text index rebuilt",
    "fts_orphan": "full-text index rebuilt",
    "chunks_missing": "file re-indexed",
    "orphan_chunks": "chunks without a file deleted",
    "embedder_changed": "all chunks re-embedded",
    "vectors_missing": "vectors computed",
    "file_missing": "removed from the index",
    "file_excluded": "removed from the index",
    "file_changed": "file re-indexed",
    "file_new": "file indexed",
    "chunker_changed": "file re-chunked",
    "root_missing": "root removed from the index",
}

# Kinds of damage; every other kind is staleness, which a build brings up to date.
DAMAGE_KINDS = frozenset(
    {"integrity", "fts_mismatch", "fts_orphan", "chunks_missing", "orphan_chunks"}
)

Problem = dict[str, str]  # {"kind", "path", "detail"}


def stat_unchanged(known: FileRow, file: ScannedFile) -> bool:
    """The cheap prefilter: same size and mtime, and that mtime safely before indexing."""
    settled = file.mtime_ns < (known.indexed_at - _RACY_WINDOW_S) * 1e9
    return settled and (known.size, known.mtime_ns) == (file.size, file.mtime_ns)


def is_damage(problem: Problem) -> bool:
    return problem["kind"] in DAMAGE_KINDS


def _problem(kind: str, path: Path | str, detail: str) -> Problem:
    return {"kind": kind, "path": str(path), "detail": detail}


def check_index(
    store: IndexStore,
    config: IndexingConfig,
    *,
    chunker: str,
    embedder: IEmbedder | None,
    rebuild: Callable[[Sequence[Path]], Any],
    repair: bool = False,
) -> dict[str, Any]:
    """Find damage (SQLite and FTS5 integrity, chunks vs full-text rows, chunks vs manifest)
    and staleness (missing vectors, the manifest vs the files on disk).

    Returns {"ok", "consistent", "damaged", "stale", "problems", "repaired", "remaining"};
    each problem is {"kind", "path", "detail"}. "problems" is all that was found, "damaged"
    and "stale" split it; "consistent": no damage remains; "ok": nothing remains. With
    `repair`, rebuilds the full-text table when needed, re-indexes changed, new and damaged
    files from disk (`rebuild`: a build of the given roots), removes vanished ones and embeds
    missing vectors; "remaining" lists what a second check still finds.
    """
    checker = _Checker(store, config, chunker, embedder)
    problems = remaining = checker.problems()
    repaired: list[Problem] = []
    if repair and problems:
        with store.writer():
            _repair(store, problems, rebuild)
            remaining = checker.problems()
        still = {(p["kind"], p["path"]) for p in remaining}
        repaired = [
            _problem(p["kind"], p["path"], _REPAIRS.get(p["kind"], "repaired"))
            for p in problems
            if (p["kind"], p["path"]) not in still
        ]
    return {
        "ok": not remaining,
        "consistent": not any(is_damage(p) for p in remaining),
        "damaged": [p for p in problems if is_damage(p)],
        "stale": [p for p in problems if not is_damage(p)],
        "problems": problems,
        "repaired": repaired,
        "remaining": remaining,
    }


class _Checker:
    def __init__(
        self, store: IndexStore, config: IndexingConfig, chunker: str, embedder: IEmbedder | None
    ) -> None:
        self.store = store
        self.config = config
        self.chunker = chunker
        self.embedder = embedder

    def problems(self) -> list[Problem]:
        try:
            return [*self.database_problems(), *self.vector_problems(), *self.disk_problems()]
        except sqlite3.DatabaseError as exc:
            raise IndexDatabaseError(
                f"the index {self.store.db} is damaged beyond checking ({exc}); delete it and "
                "run `neat index build` again (it is rebuilt from the source files)"
            ) from exc

    def database_problems(self) -> list[Problem]:
        store = self.store
        roots = {r.id: r for r in store.roots()}

        def where(root_id: int, rel: str) -> str:
            root = roots.get(root_id)
            return str(root.base / rel) if root else rel

        found = [_problem("integrity", store.db, e) for e in integrity_errors(store)]
        mismatched, orphans = fts_mismatches(store)
        found += [
            _problem(
                "fts_mismatch",
                where(r, p),
                f"{n} chunk(s) missing or different in the full-text index",
            )
            for r, p, n in mismatched
        ]
        if orphans:
            found.append(
                _problem("fts_orphan", store.db, f"{orphans} full-text row(s) without a chunk")
            )
        found += [
            _problem("chunks_missing", where(r, p), _count_detail(want, have))
            for r, p, want, have in chunk_count_mismatches(store)
        ]
        if orphan := orphan_chunks(store):
            found.append(
                _problem("orphan_chunks", store.db, f"{orphan} chunk(s) of no indexed file")
            )
        return found

    def vector_problems(self) -> list[Problem]:
        """Only for an index that has (or should have) vectors."""
        stored = self.store.get_meta("embedder")
        if self.embedder is None and stored is None:
            return []
        found = []
        if self.embedder is not None and stored != embedder_fingerprint(self.embedder):
            found.append(
                _problem(
                    "embedder_changed",
                    self.store.db,
                    f"vectors are of {stored}, "
                    f"indexing.embedder is {embedder_fingerprint(self.embedder)}",
                )
            )
        roots = {r.id: r for r in self.store.roots()}
        found += [
            _problem(
                "vectors_missing",
                roots[r].base / p if r in roots else p,
                f"{n} chunk(s) without a vector",
            )
            for r, p, n in missing_vectors(self.store)
        ]
        return found

    def disk_problems(self) -> list[Problem]:
        found: list[Problem] = []
        for root in self.store.roots():
            if not root.path.exists():
                found.append(_problem("root_missing", root.path, "indexed path no longer exists"))
                continue
            manifest = self.store.manifest(root.id)
            on_disk = {
                posix_rel(f.path, root.base): f for f in scan([root.path], self.config).files
            }
            for rel, row in sorted(manifest.items()):
                file = on_disk.get(rel)
                path = root.base / rel
                if file is None and path.exists():
                    found.append(_problem("file_excluded", path, "no longer matched by the config"))
                elif file is None:
                    found.append(_problem("file_missing", path, "indexed file is gone from disk"))
                elif row.chunker != self.chunker:
                    found.append(
                        _problem(
                            "chunker_changed",
                            path,
                            f"chunked with {row.chunker}, the current chunking is {self.chunker}",
                        )
                    )
                elif not stat_unchanged(row, file) and _sha256(path) != row.sha256:
                    found.append(_problem("file_changed", path, "content differs from the index"))
            for rel, file in sorted(on_disk.items()):
                if rel not in manifest and _indexable(file.path):
                    found.append(_problem("file_new", file.path, "file is not indexed yet"))
        return found


def _repair(
    store: IndexStore, problems: Sequence[Problem], rebuild: Callable[[Sequence[Path]], Any]
) -> None:
    kinds = {p["kind"] for p in problems}
    if kinds & {"integrity", "fts_mismatch", "fts_orphan"}:
        rebuild_fts(store)
    if "orphan_chunks" in kinds:
        delete_orphan_chunks(store)
    if "chunks_missing" in kinds:
        for root_id, rel, _, _ in chunk_count_mismatches(store):
            forget_file_hash(store, root_id, rel)
    roots = [r.path for r in store.roots()]
    if roots:
        rebuild(roots)


def _count_detail(want: int, have: int) -> str:
    if want != have:
        return f"the manifest lists {want} chunk(s), the index holds {have}"
    return "the file's stored body is missing"


def _sha256(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _indexable(path: Path) -> bool:
    try:
        return content_skip_reason(path.read_bytes()) is None
    except OSError:
        return False


# -- SQL of the checks -----------------------------------------------------------------------------


def integrity_errors(store: IndexStore) -> list[str]:
    """SQLite's own check, then FTS5's; empty when both pass."""
    rows = [str(r[0]) for r in store.conn.execute("PRAGMA integrity_check").fetchall()]
    errors = [] if rows == ["ok"] else rows
    try:
        store.conn.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")
    except sqlite3.DatabaseError as exc:
        errors.append(f"full-text index: {exc}")
    return errors


def fts_mismatches(store: IndexStore) -> tuple[list[tuple[int, str, int]], int]:
    """Chunks whose full-text row is missing or differs, grouped per file as
    (root_id, path, count); and the number of full-text rows without a chunk."""
    bad = store.conn.execute(
        "SELECT c.root_id, c.path, COUNT(*) FROM chunks c "
        "LEFT JOIN chunks_fts f ON f.rowid = c.id "
        "WHERE f.rowid IS NULL OR f.body IS NOT c.text GROUP BY c.root_id, c.path "
        "ORDER BY c.root_id, c.path"
    ).fetchall()
    orphans = store.conn.execute(
        "SELECT COUNT(*) FROM chunks_fts WHERE rowid NOT IN (SELECT id FROM chunks)"
    ).fetchone()[0]
    return [(int(r), str(p), int(n)) for r, p, n in bad], int(orphans)


def chunk_count_mismatches(store: IndexStore) -> list[tuple[int, str, int, int]]:
    """(root_id, path, expected, stored) for files whose chunks or body went missing."""
    rows = store.conn.execute(
        "SELECT f.root_id, f.path, f.chunk_count, "
        "(SELECT COUNT(*) FROM chunks c WHERE c.root_id = f.root_id AND c.path = f.path), "
        "EXISTS (SELECT 1 FROM bodies b WHERE b.root_id = f.root_id AND b.path = f.path) "
        "FROM files f"
    ).fetchall()
    return [(r, p, want, have) for r, p, want, have, body in rows if want != have or not body]


def orphan_chunks(store: IndexStore) -> int:
    row = store.conn.execute(
        "SELECT COUNT(*) FROM chunks c WHERE NOT EXISTS "
        "(SELECT 1 FROM files f WHERE f.root_id = c.root_id AND f.path = c.path)"
    ).fetchone()
    return int(row[0])


def missing_vectors(store: IndexStore) -> list[tuple[int, str, int]]:
    """(root_id, path, count) of chunks without a vector."""
    rows = store.conn.execute(
        "SELECT c.root_id, c.path, COUNT(*) FROM chunks c WHERE NOT EXISTS "
        "(SELECT 1 FROM vectors v WHERE v.content_hash = c.content_hash) "
        "GROUP BY c.root_id, c.path ORDER BY c.root_id, c.path"
    ).fetchall()
    return [(int(r), str(p), int(n)) for r, p, n in rows]


def delete_orphan_chunks(store: IndexStore) -> int:
    with store.transaction():
        store.conn.execute(
            "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks c WHERE NOT EXISTS "
            "(SELECT 1 FROM files f WHERE f.root_id = c.root_id AND f.path = c.path))"
        )
        cur = store.conn.execute(
            "DELETE FROM chunks WHERE NOT EXISTS "
            "(SELECT 1 FROM files f WHERE f.root_id = chunks.root_id "
            "AND f.path = chunks.path)"
        )
        store.bump_generation()
    return cur.rowcount


def forget_file_hash(store: IndexStore, root_id: int, path: str) -> None:
    """Make the next build re-read and re-chunk this file (its stored chunks are suspect)."""
    with store.transaction():
        store.conn.execute(
            "UPDATE files SET sha256 = '', size = -1 WHERE root_id = ? AND path = ?",
            (root_id, path),
        )


def rebuild_fts(store: IndexStore) -> int:
    """Rewrite the full-text table from `chunks`; returns the rows written."""
    with store.transaction():
        # Dropped and created again, so even a damaged full-text index is replaced.
        store.conn.execute("DROP TABLE IF EXISTS chunks_fts")
        store.conn.execute(FTS_TABLE)
        rows = store.conn.execute("SELECT id, heading_path, text FROM chunks").fetchall()
        store.conn.executemany(
            "INSERT INTO chunks_fts (rowid, heading, body) VALUES (?, ?, ?)",
            ((i, heading_text(json.loads(hp)), t) for i, hp, t in rows),
        )
        store.bump_generation()
    return len(rows)
