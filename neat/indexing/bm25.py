"""FTS5's bm25() recomputed in NumPy from term statistics cached per index generation.

FTS5 scores a query by calling bm25() on every matching row, and each call decodes that
row's position lists: on a 10k-document index a query of a few ordinary words matches
thousands of rows and costs 10-20 ms, nearly all of it there. The statistics bm25() needs
are few and change only when the index does: each row's token count, the row count and
average length, and per term the rows holding it with its frequency. Cached per generation
(`meta.generation`, bumped by every write of chunks), a query is a few vectorised sums over
the postings of its terms, and an index that changes between two queries is re-read, never
answered from stale numbers.

The arithmetic is FTS5's own (`fts5Bm25Function` in ext/fts5/fts5_aux.c, SQLite 3.40), in
the same order and in float64, so scores are bit-for-bit those of `-bm25(chunks_fts)`:

    idf(t)   = log((N - n_t + 0.5) / (n_t + 0.5)), or 1e-6 when that is <= 0
    score(d) = sum over the query's phrases t, in query order, of
               idf(t) * (f(t, d) * (k1 + 1)) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))

with k1 = 1.2, b = 0.75, f the term's count over both columns (weights 1), |d| the row's
tokens in both columns, N the row count and avgdl = total tokens / N. Equal scores keep the
order FTS5 gives them, by rowid. Only free words take this path; phrases need positions, and
a query with one goes to FTS5 itself (`IndexStore.search_bm25`).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CLAMPED_IDF", "K1", "TOKENIZER", "B", "Bm25Cache", "decode_varints"]

TOKENIZER = "porter unicode61"  # the index's (chunks_fts); the scratch tables must match it
K1 = 1.2
B = 0.75
CLAMPED_IDF = 1e-6
# Postings kept per generation, all terms together; past it the term cache starts afresh
# (12 bytes an entry: about 50 MB).
MAX_CACHED_POSTINGS = 4_000_000
# Words whose tokens are remembered; the tokenizer never changes, so these never go stale.
MAX_CACHED_WORDS = 200_000

_INSTANCE = "temp.neat_chunks_instance"
_ROW_VOCAB = "temp.neat_chunks_vocab"


def decode_varints(blob: bytes) -> list[int]:
    """SQLite varints (big-endian groups of 7 bits, a set high bit meaning more follow; the
    ninth byte carries 8 bits), as FTS5 writes row sizes and its averages record."""
    values: list[int] = []
    i, n = 0, len(blob)
    while i < n:
        value = 0
        for j in range(9):
            byte = blob[i]
            i += 1
            if j == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        values.append(value)
    return values


@dataclass(slots=True)
class _Snapshot:
    """The statistics of one generation of the index."""

    generation: int
    rowids: np.ndarray  # int64, ascending: the dense position of a row is its index here
    norm: np.ndarray  # float64 per row: k1 * (1 - b + b * |d| / avgdl)
    rows: int
    doc_counts: dict[str, int] = field(default_factory=dict)
    postings: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    entries: int = 0


class Bm25Cache:
    """Scores free-word queries over `chunks_fts` as FTS5 would, from cached statistics.

    The caller passes the generation it read in the same read transaction as the queries
    this object makes, so one snapshot of the index backs every number of a query.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._snapshot: _Snapshot | None = None
        self._tokens: dict[str, tuple[str, ...]] = {}
        self._vocab_ready = False
        self._scratch: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None

    # -- tokens, snippets --------------------------------------------------------------------------

    def _scratch_db(self) -> sqlite3.Connection:
        """A private in-memory database with FTS5 tables of the index's tokenizer: words are
        tokenized and snippets made there, so the index's connection never writes (not even
        its temp schema) to answer a query."""
        if self._scratch is None:
            scratch = sqlite3.connect(":memory:", isolation_level=None)
            for statement in (
                f"CREATE VIRTUAL TABLE words USING fts5(word, tokenize={TOKENIZER!r})",
                "CREATE VIRTUAL TABLE word_tokens USING fts5vocab(words, 'instance')",
                "CREATE TABLE shown (id INTEGER PRIMARY KEY, heading TEXT, body TEXT)",
                "CREATE VIRTUAL TABLE shown_fts USING fts5(heading, body, content='shown', "
                f"content_rowid='id', tokenize={TOKENIZER!r})",
            ):
                scratch.execute(statement)
            self._scratch = scratch
        return self._scratch

    def tokens(self, words: Sequence[str]) -> list[tuple[str, ...]]:
        """Each word as the index's tokenizer (porter unicode61) stores it: usually one
        stem, sometimes none or several. Cached: the tokenizer is fixed."""
        missing = [w for w in dict.fromkeys(words) if w not in self._tokens]
        if missing:
            if len(self._tokens) + len(missing) > MAX_CACHED_WORDS:
                self._tokens.clear()
            self._tokens.update(zip(missing, self._tokenize(missing), strict=True))
        return [self._tokens[w] for w in words]

    def _tokenize(self, words: Sequence[str]) -> list[tuple[str, ...]]:
        scratch = self._scratch_db()
        scratch.execute("DELETE FROM words")
        scratch.executemany("INSERT INTO words (rowid, word) VALUES (?, ?)", enumerate(words))
        found: list[list[str]] = [[] for _ in words]
        for doc, term in scratch.execute("SELECT doc, term FROM word_tokens ORDER BY doc, offset"):
            found[int(doc)].append(str(term))
        return [tuple(t) for t in found]

    def snippets(self, match: str, rows: Sequence[tuple[int, str, str]]) -> dict[int, str]:
        """FTS5's `snippet(chunks_fts, 1, '', '', '…', 32)` of these (rowid, heading, body)
        rows for the MATCH expression `match`. snippet() reads only the row itself (its
        text, its phrase hits), so the rows alone in a scratch table give the same text as
        the whole index, without evaluating the expression over every matching row."""
        scratch = self._scratch_db()
        scratch.execute("DELETE FROM shown")
        scratch.executemany("INSERT INTO shown (id, heading, body) VALUES (?, ?, ?)", rows)
        scratch.execute("INSERT INTO shown_fts (shown_fts) VALUES ('rebuild')")
        return {
            int(i): str(snip)
            for i, snip in scratch.execute(
                "SELECT rowid, snippet(shown_fts, 1, '', '', '…', 32) FROM shown_fts "
                "WHERE shown_fts MATCH ?",
                (match,),
            )
        }

    def _ensure_vocab(self) -> None:
        if self._vocab_ready:
            return
        for statement in (
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {_ROW_VOCAB} "
            "USING fts5vocab(main, chunks_fts, 'row')",
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {_INSTANCE} "
            "USING fts5vocab(main, chunks_fts, 'instance')",
        ):
            self._conn.execute(statement)  # schema of the temp database only: no rows change
        self._vocab_ready = True

    # -- statistics --------------------------------------------------------------------------------

    def snapshot(self, generation: int) -> _Snapshot:
        """The statistics of `generation`, read again when the index has moved on."""
        if self._snapshot is None or self._snapshot.generation != generation:
            self._snapshot = None  # free the old arrays before reading the new ones
            self._snapshot = self._read_snapshot(generation)
        return self._snapshot

    def _read_snapshot(self, generation: int) -> _Snapshot:
        conn = self._conn
        averages = conn.execute("SELECT block FROM chunks_fts_data WHERE id = 1").fetchone()
        # Absent or empty until the first row is written: an empty index.
        totals = decode_varints(bytes(averages[0])) if averages is not None else []
        rows, tokens = (totals[0], sum(totals[1:])) if totals else (0, 0)
        sized = conn.execute("SELECT id, sz FROM chunks_fts_docsize ORDER BY id").fetchall()
        rowids = np.fromiter((r[0] for r in sized), dtype=np.int64, count=len(sized))
        sizes = np.fromiter(
            (sum(decode_varints(bytes(r[1]))) for r in sized), dtype=np.float64, count=len(sized)
        )
        avgdl = tokens / rows if rows else 0.0
        if rows and avgdl > 0:
            norm = K1 * (1 - B + B * sizes / avgdl)
        else:  # an empty index: nothing matches, the values are never read
            norm = np.full(len(sized), K1, dtype=np.float64)
        return _Snapshot(generation, rowids, norm, rows)

    def doc_counts(self, snapshot: _Snapshot, terms: Sequence[str]) -> list[int]:
        """Rows holding each term (any column), as FTS5 counts them for the IDF."""
        missing = [t for t in dict.fromkeys(terms) if t not in snapshot.doc_counts]
        if missing:
            self._ensure_vocab()
            marks = ",".join("?" * len(missing))
            found = dict(
                self._conn.execute(
                    f"SELECT term, doc FROM {_ROW_VOCAB} WHERE term IN ({marks})", missing
                ).fetchall()
            )
            snapshot.doc_counts.update((t, int(found.get(t, 0))) for t in missing)
        return [snapshot.doc_counts[t] for t in terms]

    def _postings(self, snapshot: _Snapshot, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(dense row positions, term frequency as float64) of one term."""
        cached = snapshot.postings.get(term)
        if cached is not None:
            return cached
        self._ensure_vocab()
        docs = np.fromiter(
            (
                r[0]
                for r in self._conn.execute(f"SELECT doc FROM {_INSTANCE} WHERE term = ?", [term])
            ),
            dtype=np.int64,
        )
        rowids, counts = np.unique(docs, return_counts=True)  # ascending, as the vocab is
        positions = np.searchsorted(snapshot.rowids, rowids)
        entry = (positions, counts.astype(np.float64))
        if snapshot.entries + len(positions) > MAX_CACHED_POSTINGS:
            snapshot.postings.clear()
            snapshot.entries = 0
        snapshot.postings[term] = entry
        snapshot.entries += len(positions)
        return entry

    # -- scoring -----------------------------------------------------------------------------------

    def top(self, snapshot: _Snapshot, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """(rowid, score) of the `k` best rows for the OR of `terms` (one phrase each, in
        query order, repeats counted as FTS5 counts them), best first, ties by rowid."""
        if k <= 0 or not terms or len(snapshot.rowids) == 0:
            return []
        n = snapshot.rows
        scores = np.zeros(len(snapshot.rowids), dtype=np.float64)
        for term, hits in zip(terms, self.doc_counts(snapshot, terms), strict=True):
            if hits == 0:
                continue
            idf = math.log((n - hits + 0.5) / (hits + 0.5))
            if idf <= 0.0:
                idf = CLAMPED_IDF
            positions, freq = self._postings(snapshot, term)
            scores[positions] += idf * ((freq * (K1 + 1.0)) / (freq + snapshot.norm[positions]))
        matched = np.flatnonzero(scores > 0.0)
        if len(matched) == 0:
            return []
        values = scores[matched]
        if k < len(matched):
            kth = np.partition(values, len(values) - k)[len(values) - k]
            keep = values >= kth
            matched, values = matched[keep], values[keep]
        order = np.lexsort((matched, -values))[:k]  # matched ascends with rowid
        best = matched[order]
        return [
            (int(r), float(s)) for r, s in zip(snapshot.rowids[best], scores[best], strict=True)
        ]
