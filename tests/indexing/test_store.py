"""The SQLite store: schema, one-transaction file replacement, FTS5 queries, lock, checks."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neat.indexing.integrity import (
    chunk_count_mismatches,
    fts_mismatches,
    integrity_errors,
    rebuild_fts,
)
from neat.indexing.records import Chunk
from neat.indexing.store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    FileRow,
    IndexDatabaseError,
    IndexLockedError,
    IndexStore,
    fts_query,
    split_query,
)


def chunks(path: str, *sections: tuple[str, str]) -> list[Chunk]:
    return [
        Chunk(path, (heading,), 1 + 3 * i, 3 + 3 * i, f"## {heading}\n\n{body}")
        for i, (heading, body) in enumerate(sections)
    ]


def row(path: str, sha: str = "s1", root_id: int = 1) -> FileRow:
    return FileRow(root_id, path, 10, 1, sha, "1/2000/200", 0)


@pytest.fixture
def store(tmp_path: Path) -> IndexStore:
    s = IndexStore(tmp_path / "nested" / "dir" / "index.db")
    s.ensure_root(tmp_path, "dir")
    return s


def counts(store: IndexStore) -> tuple[int, int, int]:
    return store.count("files"), store.count("chunks"), store.count("chunks_fts")


def test_schema_wal_and_parent_folders(tmp_path: Path, store: IndexStore) -> None:
    assert store.db == (tmp_path / "nested" / "dir" / "index.db").resolve()
    mode = store.conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
    assert {"meta", "roots", "files", "bodies", "chunks", "chunks_fts", "vectors"} <= tables
    store.close()
    reopened = IndexStore(tmp_path / "nested" / "dir" / "index.db")  # existing schema is kept
    assert [r.path for r in reopened.roots()] == [tmp_path]


def test_replacing_a_file_never_duplicates(store: IndexStore) -> None:
    first = chunks("a.md", ("Intro", "hello world"), ("Usage", "run the tool"))
    assert store.replace_file(1, row("a.md"), {"title": "A"}, "body", first, {}) == 0
    assert counts(store) == (1, 2, 2)
    second = chunks("a.md", ("Intro", "hello again"))
    for _ in range(3):
        assert store.replace_file(1, row("a.md", "s2"), {}, "body 2", second, {}) in (2, 1)
    assert counts(store) == (1, 1, 1)
    assert store.body(1, "a.md") == "body 2"
    assert store.manifest(1)["a.md"].chunk_count == 1
    assert store.remove_file(1, "a.md") == 1
    assert counts(store) == (0, 0, 0)
    assert store.body(1, "a.md") is None


def test_generation_counts_committed_changes(store: IndexStore) -> None:
    start = store.generation
    store.replace_file(1, row("a.md"), {}, "", chunks("a.md", ("A", "x")), {})
    store.touch_file(1, "a.md", 11, 2)  # same content: not a change
    assert store.generation == start + 1
    store.remove_file(1, "a.md")
    assert store.generation == start + 2


def test_a_failed_transaction_leaves_nothing(store: IndexStore) -> None:
    store.replace_file(1, row("a.md"), {}, "", chunks("a.md", ("A", "old text")), {})
    bad = [Chunk("a.md", ("A",), 1, 2, "new"), None]  # the second insert fails
    with pytest.raises(AttributeError):
        store.replace_file(1, row("a.md", "s2"), {}, "", bad, {})  # type: ignore[arg-type]
    assert counts(store) == (1, 1, 1)
    assert store.manifest(1)["a.md"].sha256 == "s1"
    assert [r[0] for r in store.search_bm25("old", 5)]


@pytest.mark.parametrize(
    "query",
    ["Vec<T>", '"', "AND OR", "-", "*", "", "NEAR(a b)", "a:b", "title:x", "^x", "'", "((", "\\"],
)
def test_any_text_is_a_safe_query(store: IndexStore, query: str) -> None:
    store.replace_file(
        1, row("a.md"), {}, "", chunks("a.md", ("Vectors", "Vec<T> holds values; and or not")), {}
    )
    store.search_bm25(query, 5)  # never raises


def test_fts_query_quotes_every_word() -> None:
    assert fts_query("Vec<T> AND -x*") == '"vec" OR "t" OR "and" OR "x"'
    assert fts_query('Vec<T> "AND" -x*') == '"and" AND ("and" OR "vec" OR "t" OR "x")'
    assert fts_query("- * \" ''") is None
    assert fts_query("Über straße") == '"über" OR "straße"'


def test_bm25_searches_the_heading_path_and_ranks_positive(store: IndexStore) -> None:
    store.replace_file(
        1,
        row("a.md"),
        {},
        "",
        [
            Chunk("a.md", ("Guide", "Zebra Migration"), 1, 3, "Animals move in herds."),
            Chunk("a.md", ("Guide", "Other"), 4, 6, "Nothing to see here, animals."),
        ],
        {},
    )
    hits = store.search_bm25("zebra", 5)
    assert len(hits) == 1
    rows = store.chunk_rows([hits[0][0]])
    assert rows[hits[0][0]].heading_path == ("Guide", "Zebra Migration")
    both = store.search_bm25("animals herds", 5)
    assert [s for _, s, _ in both] == sorted((s for _, s, _ in both), reverse=True)
    assert all(score > 0 for _, score, _ in both)
    assert "herds" in both[0][2]


def test_vectors_are_keyed_by_content_and_collected(store: IndexStore) -> None:
    first = chunks("a.md", ("A", "one"), ("B", "two"))
    vectors = {c.content_hash: np.full(4, i, "<f4").tobytes() for i, c in enumerate(first)}
    store.replace_file(1, row("a.md"), {}, "", first, vectors)
    assert store.vector_hashes(c.content_hash for c in first) == set(vectors)
    ids, matrix = store.load_vectors(4)
    assert matrix.shape == (2, 4) and len(ids) == 2
    store.replace_file(1, row("a.md", "s2"), {}, "", first[:1], {})
    assert store.collect_vectors() == 1
    assert store.count("vectors") == 1
    assert store.chunks_without_vectors(10) == []


def test_nested_roots_fold_into_the_outer_one(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "i.db")
    inner = store.ensure_root(tmp_path / "docs" / "sub", "dir")
    single = store.ensure_root(tmp_path / "docs" / "top.md", "file")
    store.replace_file(inner.id, row("x.md", root_id=inner.id), {}, "", [], {})
    store.replace_file(single.id, row("top.md", root_id=single.id), {}, "", [], {})
    outer = store.ensure_root(tmp_path / "docs", "dir")
    assert [r.path for r in store.roots()] == [tmp_path / "docs"]
    assert set(store.manifest(outer.id)) == {"sub/x.md", "top.md"}
    assert store.find_root(tmp_path / "docs" / "sub" / "y.md") == outer
    assert store.ensure_root(tmp_path / "docs" / "sub", "dir") == outer


def test_checks_find_and_rebuild_a_damaged_full_text_index(store: IndexStore) -> None:
    store.replace_file(1, row("a.md"), {}, "", chunks("a.md", ("A", "one"), ("B", "two")), {})
    store.replace_file(1, row("b.md"), {}, "", chunks("b.md", ("C", "three")), {})
    assert fts_mismatches(store) == ([], 0)
    assert integrity_errors(store) == []
    raw = sqlite3.connect(store.db)
    raw.execute("DELETE FROM chunks_fts WHERE rowid = (SELECT MIN(id) FROM chunks)")
    raw.execute("DELETE FROM chunks WHERE path = 'b.md'")
    raw.commit()
    raw.close()
    assert fts_mismatches(store) == ([(1, "a.md", 1)], 1)
    assert chunk_count_mismatches(store) == [(1, "b.md", 1, 0)]
    assert rebuild_fts(store) == 2
    assert fts_mismatches(store) == ([], 0)
    assert [r[0] for r in store.search_bm25("one", 5)]


def test_a_second_writer_is_refused_with_the_holders_pid(store: IndexStore) -> None:
    other = IndexStore(store.db)
    with store.writer():
        with store.writer():  # re-entrant for its owner
            pass
        with pytest.raises(IndexLockedError, match=rf"pid {os.getpid()}.*wait") as err:
            other.lock.acquire()
        assert str(store.db) in str(err.value)
        assert other.search_bm25("anything", 3) == []  # readers never wait on the lock
    other.lock.acquire()  # released: the next writer gets it
    other.lock.release()


def test_a_writer_in_another_process_locks_out_this_one(store: IndexStore) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from neat.indexing.store import IndexStore\n"
            "s = IndexStore(Path(sys.argv[1])); s.lock.acquire(); print('locked', flush=True)\n"
            "sys.stdin.readline()",
            str(store.db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(IndexLockedError, match=f"pid {holder.pid}"):
            store.lock.acquire()
    finally:
        holder.communicate("\n", timeout=30)
    store.lock.acquire()  # the kernel released it with the process
    store.lock.release()


def test_a_file_that_is_not_an_index_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexDatabaseError, match=r"junk.db is not a neat index.*--db") as err:
        IndexStore(junk)
    assert "not an SQLite database" in str(err.value) and "delete" not in str(err.value)
    assert junk.read_bytes() == b"this is not sqlite" * 100
    newer = tmp_path / "newer.db"
    IndexStore(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(IndexDatabaseError, match="schema version 99"):
        IndexStore(newer)


def other_apps_database(path: Path, application_id: int = 0) -> bytes:
    """A real SQLite file of another program (rollback journal, one table of rows)."""
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {application_id}")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [("milk",), ("eggs",)])
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("application_id", "why"),
    [(0, "it holds other tables: notes"), (0x1234, "it belongs to another application, id 0x1234")],
)
def test_another_applications_database_is_refused_untouched(
    tmp_path: Path, application_id: int, why: str
) -> None:
    db = tmp_path / "app.sqlite"
    before = other_apps_database(db, application_id)
    with pytest.raises(IndexDatabaseError) as err:
        IndexStore(db)
    message = str(err.value)
    assert f"{db} is not a neat index ({why})" in message
    assert "--db" in message and "delete" not in message
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite"]  # no -wal, -shm, .lock


def test_a_new_index_is_marked_and_an_unmarked_old_one_gets_the_mark_when_written(
    tmp_path: Path,
) -> None:
    db = tmp_path / "index.db"
    store = IndexStore(db)
    assert store.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    store.ensure_root(tmp_path, "dir")
    store.replace_file(1, row("a.md"), {}, "", chunks("a.md", ("A", "alpha")), {})
    store.conn.execute("PRAGMA application_id = 0")  # as every index made before the mark
    store.close()
    old = IndexStore(db)  # still opens, reads, and is not written by reading
    assert [r[0] for r in old.search_bm25("alpha", 3)]
    assert old.conn.execute("PRAGMA application_id").fetchone()[0] == 0
    with old.writer():
        pass
    assert old.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    old.close()


def test_split_query_finds_phrases_and_ignores_an_unbalanced_quote() -> None:
    assert split_query('"Borrow checker" rules') == ([("borrow", "checker")], ["rules"])
    assert split_query('a "b c') == ([], ["a", "b", "c"])
    assert split_query('"x" y "z w" "') == ([("x",), ("z", "w")], ["y"])
    assert split_query('""  " " plain') == ([], ["plain"])
    assert fts_query('"borrow checker"') == '"borrow checker"'
    assert fts_query('"a b" "c d"') == '"a b" AND "c d"'


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"borrow checker"', ["together.md"]),
        ('"checker borrow"', []),  # in order
        ('"borrow checker" value', ["together.md"]),  # the phrase is required
        ("borrow checker", ["apart.md", "together.md"]),
        ('"borrow checker', ["apart.md", "together.md"]),  # unbalanced: free words
        ('"borrow checker" "', ["together.md"]),  # the stray last quote is ignored
    ],
)
def test_a_quoted_phrase_matches_only_adjacent_words_in_order(
    store: IndexStore, query: str, expected: list[str]
) -> None:
    texts = {
        "together.md": "Rust's borrow checker rejects this program.",
        "apart.md": "You borrow a value here; a checker of lifetimes runs later.",
        "other.md": "Nothing related at all.",
    }
    for path, text in texts.items():
        store.replace_file(1, row(path), {}, "", [Chunk(path, ("T",), 1, 1, text)], {})
    hits = store.chunk_rows(i for i, _, _ in store.search_bm25(query, 10))
    assert sorted(r.path for r in hits.values()) == expected
