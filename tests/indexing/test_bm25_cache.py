"""BM25 from cached statistics (`neat.indexing.bm25`) against FTS5's own bm25() and snippet()
on real indexes: same rows, same order, bit-equal scores, and never stale after a change."""

from __future__ import annotations

from pathlib import Path

from neat.config.indexing import IndexingConfig
from neat.indexing import MarkdownIndexer
from neat.indexing.bm25 import decode_varints
from neat.indexing.store import IndexStore, compact_snippet, match_expression, split_query

DOCS = {
    "rivers.md": "# Rivers\n\nThe river runs to the sea. Rivers running fast carve valleys.\n\n"
    "## Deltas\n\nA delta forms where a river meets the sea and drops its silt.\n",
    "boats.md": "# Boats\n\nA boat floats on the river. Boats carry goods down the river.\n",
    "fish.md": "# Fish\n\nFish swim in the river and in the sea; salmon run upstream.\n",
    "ties.md": "# Copy one\n\nzebra stripes\n",
    "ties2.md": "# Copy two\n\nzebra stripes\n",
    "long.md": "# Notes\n\n" + " ".join(["the valley and the river"] * 60) + "\n",
}
QUERIES = [
    "river",
    "the river runs to the sea",
    "river rivers",  # two words, one stem: FTS5 counts the phrase twice
    "running boats",
    "zebra",  # equal scores: kept in rowid order
    "salmon upstream delta",
    "valley",
    "the",  # only common words: kept whole, every score clamped
    "nothing matches this",
    '"the sea" river',  # a phrase: FTS5 itself
]


def write_docs(folder: Path, docs: dict[str, str]) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")


def fts5_ranking(store: IndexStore, query: str, k: int) -> list[tuple[int, float, str]]:
    """What `search_bm25` answered before the cache: one FTS5 query with snippets."""
    phrases, words = split_query(query)
    match = match_expression(
        phrases, store._informative_words(" ".join(words), phrases=bool(phrases))
    )
    if match is None:
        return []
    rows = store.conn.execute(
        "SELECT rowid, -bm25(chunks_fts), snippet(chunks_fts, 1, '', '', '…', 32) FROM "
        "chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts) LIMIT ?",
        (match, k),
    )
    return [(int(i), float(s), compact_snippet(t)) for i, s, t in rows]


def test_cached_scores_equal_fts5_exactly(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", DOCS)
    with MarkdownIndexer(tmp_path / "index.db", IndexingConfig()) as indexer:
        indexer.build([tmp_path / "docs"])
        store = indexer._store
        for query in QUERIES:
            for k in (1, 3, 50):
                assert store.search_bm25(query, k) == fts5_ranking(store, query, k), (query, k)
        ties = store.search_bm25("zebra", 5)
        assert len(ties) == 2 and ties[0][1] == ties[1][1] and ties[0][0] < ties[1][0]


def test_an_update_is_seen_by_the_next_query(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_docs(docs, DOCS)
    with MarkdownIndexer(tmp_path / "index.db", IndexingConfig()) as indexer:
        indexer.build([docs])
        before = indexer.search("salmon", mode="bm25")
        assert [Path(h.path).name for h in before] == ["fish.md"]
        (docs / "boats.md").write_text("# Boats\n\nSalmon boats and salmon nets.\n", "utf-8")
        (docs / "fish.md").unlink()
        indexer.build([docs])
        after = indexer.search("salmon", mode="bm25")
        assert [Path(h.path).name for h in after] == ["boats.md"]
        store = indexer._store
        for query in QUERIES:
            assert store.search_bm25(query, 10) == fts5_ranking(store, query, 10), query


def test_another_processs_write_is_seen(tmp_path: Path) -> None:
    """A reader's cache follows a build made through another connection (as by `neat index
    watch` in another process): the generation it reads moves on."""
    docs = tmp_path / "docs"
    write_docs(docs, DOCS)
    db = tmp_path / "index.db"
    with MarkdownIndexer(db, IndexingConfig()) as writer:
        writer.build([docs])
        with MarkdownIndexer(db, IndexingConfig()) as reader:
            assert reader.search("otter", mode="bm25") == []
            (docs / "otter.md").write_text("# Otters\n\nThe otter swims.\n", "utf-8")
            writer.build([docs])
            hits = reader.search("otter", mode="bm25")
            assert [Path(h.path).name for h in hits] == ["otter.md"]
            assert reader._store.search_bm25("otter river", 10) == fts5_ranking(
                reader._store, "otter river", 10
            )


def test_an_empty_index_answers_nothing(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "index.db")
    try:
        assert store.search_bm25("river sea", 5) == []
    finally:
        store.close()


def test_a_query_leaves_the_index_connection_unwritten(tmp_path: Path) -> None:
    write_docs(tmp_path / "docs", DOCS)
    with MarkdownIndexer(tmp_path / "index.db", IndexingConfig()) as indexer:
        indexer.build([tmp_path / "docs"])
        conn = indexer._store.conn
        before = conn.total_changes
        for query in QUERIES:
            indexer.search(query, mode="bm25")
        assert conn.total_changes == before and not conn.in_transaction


def test_varints_decode_as_sqlite_writes_them() -> None:
    assert decode_varints(b"\x01\x81\x1e") == [1, 158]
    assert decode_varints(b"\x7f\x81\x00") == [127, 128]
    assert decode_varints(b"\xff" * 8 + b"\x01") == [(1 << 64) - 255]
    assert decode_varints(b"") == []
