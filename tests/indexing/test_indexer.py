"""MarkdownIndexer end to end on real files and a real SQLite database: incremental builds,
skips, the writer lock, kill -9 mid-build, check/repair, and the three search modes."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from neat.config.indexing import ChunkingConfig, IndexingConfig
from neat.errors import ConfigError, DataError
from neat.indexing import IndexLockedError, MarkdownIndexer
from neat.indexing.embedders import SentenceTransformerEmbedder
from neat.interfaces import IDocumentIndexer, IEmbedder
from tests.indexing.tiny_models import build_tiny_sentence_transformer

RUST_BOOK = Path(__file__).resolve().parents[1] / "data" / "rust-book"


class HashingEmbedder:
    """A real, deterministic IEmbedder: hashed bag of words, unit rows. It remembers every text
    it embedded, so tests can tell what a build re-embedded."""

    def __init__(self, salt: str = "a", dim: int = 64) -> None:
        self.salt = salt
        self._dim = dim
        self.texts: list[str] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"hashing:{self.salt}:{self._dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.sha256((self.salt + word).encode()).digest()
                out[row, int.from_bytes(digest[:4], "little") % self._dim] += 1.0
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out / norms


def section(title: str, body: str) -> str:
    return f"## {title}\n\n{body}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """Four small files of independent sections, plus the rust-book chapters."""
    root = tmp_path / "docs"
    write(
        root / "animals.md",
        "---\ntitle: Animals\n---\n# Animals\n\n"
        + section("Zebra Migration", "Herds cross the river every year.")
        + section("Penguins", "They huddle together against the cold."),
    )
    write(root / "tools.md", "# Tools\n\n" + section("Hammer", "Drives nails into wood."))
    write(root / "guide/install.md", "# Install\n\n" + section("Pip", "Run pip install neat."))
    write(root / "guide/usage.md", "# Usage\n\n" + section("Train", "Run neat train -c exp.yaml."))
    shutil.copytree(RUST_BOOK, root / "rust-book")
    an_hour_ago = time.time_ns() - 3600 * 10**9  # older than the "racily clean" window
    for path in root.rglob("*.md"):
        os.utime(path, ns=(an_hour_ago, an_hour_ago))
    return root


@pytest.fixture
def config() -> IndexingConfig:
    return IndexingConfig()


@pytest.fixture
def indexer(tmp_path: Path, config: IndexingConfig) -> Iterator[MarkdownIndexer]:
    with MarkdownIndexer(tmp_path / "index" / "index.db", config) as ix:
        yield ix


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


def sql(db: Path, query: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def assert_no_duplicates(db: Path) -> None:
    total, distinct = sql(
        db, "SELECT COUNT(*), COUNT(DISTINCT root_id || path || ordinal) FROM chunks"
    )[0]
    assert total == distinct
    (fts,) = sql(db, "SELECT COUNT(*) FROM chunks_fts")[0]
    (expected,) = sql(db, "SELECT COALESCE(SUM(chunk_count), 0) FROM files")[0]
    assert total == fts == expected


def test_first_build_then_nothing_to_do(indexer: MarkdownIndexer, docs: Path) -> None:
    assert isinstance(indexer, IDocumentIndexer)
    first = indexer.build([docs])
    n_files = len(list(docs.rglob("*.md")))
    assert first["files_seen"] == first["added"] == n_files
    assert first["chunks_added"] == len(indexer.chunks()) > n_files
    assert first["bytes_read"] > 0 and first["removed"] == 0 and first["skipped"] == {}
    again = indexer.build([docs])
    assert again["unchanged"] == n_files
    assert again["added"] == again["updated"] == again["chunks_added"] == 0
    assert again["bytes_read"] == 0  # the (size, mtime) prefilter read no file
    assert again["generation"] == first["generation"]
    assert_no_duplicates(indexer.db)
    stats = indexer.stats()
    assert stats["files"] == n_files and stats["roots"] == [str(docs)]
    assert stats["last_build"]["unchanged"] == n_files


def test_touch_edit_delete(docs: Path, tmp_path: Path, config: IndexingConfig) -> None:
    embedder = HashingEmbedder()
    with MarkdownIndexer(tmp_path / "i.db", config, embedder=embedder) as ix:
        first = ix.build([docs])
        n_chunks = first["chunks_added"]
        assert first["embedded"] == len(set(embedder.texts)) == ix.stats()["vectors"]
        embedder.texts.clear()

        tools = docs / "tools.md"
        a_minute_ago = time.time_ns() - 60 * 10**9
        os.utime(tools, ns=(a_minute_ago, a_minute_ago))
        touched = ix.build([docs])
        assert touched["unchanged"] == first["files_seen"] and touched["chunks_added"] == 0
        assert touched["bytes_read"] == tools.stat().st_size  # read, hashed, found equal
        assert embedder.texts == []

        animals = docs / "animals.md"
        animals.write_text(animals.read_text().replace("every year", "each spring"))
        edited = ix.build([docs])
        assert (edited["updated"], edited["added"], edited["removed"]) == (1, 0, 0)
        assert edited["unchanged"] == first["files_seen"] - 1
        assert edited["chunks_removed"] == edited["chunks_added"] == len(ix.chunks("animals.md"))
        assert edited["embedded"] == 1 and len(embedder.texts) == 1  # only the edited section
        assert "each spring" in embedder.texts[0]

        tool_chunks = len(ix.chunks(tools))
        tools.unlink()
        deleted = ix.build([docs])
        assert deleted["removed"] == 1 and deleted["chunks_removed"] == tool_chunks == 1
        assert not any(c.path == "tools.md" for c in ix.chunks())
        assert ix.search("hammer nails", mode="bm25") == []
        assert len(ix.chunks()) == n_chunks - 1
        assert ix.stats()["vectors"] == len({c.content_hash for c in ix.chunks()})
        for _ in range(3):
            ix.build([docs])
        assert_no_duplicates(ix.db)
        assert ix.check()["ok"]


def test_skipped_files_are_counted_and_named(indexer: MarkdownIndexer, docs: Path) -> None:
    (docs / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (docs / "latin.md").write_bytes("# Café\n\ncrème brûlée\n".encode("latin-1"))
    write(docs / ".hidden" / "secret.md", "# Secret\n")
    write(docs / "node_modules" / "pkg" / "readme.md", "# Pkg\n")
    outside = write(docs.parent / "outside.md", "# Outside\n")
    os.symlink(outside, docs / "link.md")
    os.symlink(docs, docs / "guide" / "loop")
    report = indexer.build([docs])
    assert report["skipped"] == {
        "binary": [str(docs / "image.md")],
        "not_utf8": [str(docs / "latin.md")],
        "symlink_loop": [str(docs / "guide" / "loop")],
        "symlink_outside": [str(docs / "link.md")],
    }
    assert report["added"] == report["files_seen"] - 2
    paths = {Path(f.path).name for f in indexer.files()}
    assert not paths & {"image.md", "latin.md", "secret.md", "readme.md", "link.md"}
    # an indexed file that turns binary leaves the index
    (docs / "tools.md").write_bytes(b"\x00\x01")
    later = indexer.build([docs])
    assert later["removed"] == 1 and str(docs / "tools.md") in later["skipped"]["binary"]


def test_include_exclude_and_scope(docs: Path, tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    with MarkdownIndexer(db, IndexingConfig(exclude=["rust-book/**", "guide/*"])) as ix:
        ix.build([docs])
        assert sorted(c.path for c in ix.files()) == [
            str(docs / "animals.md"),
            str(docs / "tools.md"),
        ]
    with MarkdownIndexer(db, IndexingConfig(exclude=["rust-book/**"])) as ix:
        assert ix.build([docs])["added"] == 2
    with MarkdownIndexer(db, IndexingConfig(exclude=["rust-book/**", "**/usage.md"])) as ix:
        problems = ix.check()["problems"]
        assert [(p["kind"], Path(p["path"]).name) for p in problems] == [
            ("file_excluded", "usage.md")
        ]
        report = ix.build([docs])
        assert report["removed"] == 1  # now excluded: out of the index
        # building a sub-folder only touches that folder's files
        (docs / "animals.md").unlink()
        sub = ix.build([docs / "guide"])
        assert sub["files_seen"] == 1 and sub["removed"] == 0
        assert str(docs / "animals.md") in {f.path for f in ix.files()}


def test_nested_and_single_file_paths_share_one_entry(indexer: MarkdownIndexer, docs: Path) -> None:
    indexer.build([docs / "guide" / "install.md"])
    indexer.build([docs / "guide"])
    report = indexer.build([docs])
    assert report["added"] == len(list(docs.rglob("*.md"))) - 2
    assert indexer.stats()["roots"] == [str(docs)]
    assert len(indexer.files()) == len({f.path for f in indexer.files()})
    assert_no_duplicates(indexer.db)
    assert indexer.check()["ok"]


def test_a_vanished_root_is_emptied_and_an_unknown_one_is_an_error(
    indexer: MarkdownIndexer, docs: Path, tmp_path: Path
) -> None:
    indexer.build([docs / "guide"])
    shutil.rmtree(docs / "guide")
    report = indexer.build([docs / "guide"])
    assert report["removed"] == 2 and indexer.stats()["roots"] == []
    with pytest.raises(DataError, match="does not exist"):
        indexer.build([tmp_path / "never"])
    with pytest.raises(ConfigError, match=r"indexing\.paths"):
        indexer.build([])


def test_changed_chunking_rechunks_and_changed_embedder_reembeds(
    docs: Path, tmp_path: Path
) -> None:
    db = tmp_path / "i.db"
    first_embedder = HashingEmbedder("a")
    with MarkdownIndexer(db, IndexingConfig(), embedder=first_embedder) as ix:
        first = ix.build([docs])
    second = HashingEmbedder("b")
    with MarkdownIndexer(db, IndexingConfig(), embedder=second) as ix:
        report = ix.build([docs])
        assert report["unchanged"] == first["files_seen"]
        assert report["embedded"] == first["embedded"]  # every vector again, nothing re-chunked
        assert ix.stats()["embedder"] == "hashing:b:64"
    smaller = IndexingConfig(chunking=ChunkingConfig(max_chars=300, overlap_chars=50))
    with MarkdownIndexer(db, smaller) as ix:
        fingerprint = ix.fingerprint()
        report = ix.build([docs])
        assert report["updated"] == first["files_seen"]
        assert report["chunks_added"] > first["chunks_added"]
        assert ix.fingerprint() != fingerprint
        assert_no_duplicates(ix.db)


def test_second_writer_is_refused_while_a_reader_searches(
    indexer: MarkdownIndexer, docs: Path, config: IndexingConfig
) -> None:
    indexer.build([docs])
    lock = Path(str(indexer.db) + ".lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())\n"
            "print('locked', flush=True); sys.stdin.readline()",
            str(lock),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            IndexLockedError, match=rf"{re.escape(str(indexer.db))}.*pid {holder.pid}"
        ):
            indexer.build([docs])
        with MarkdownIndexer(indexer.db, config) as reader:
            assert reader.search("zebra", k=3)
            assert reader.stats()["files"] > 0
    finally:
        holder.communicate("\n", timeout=30)
    assert indexer.build([docs])["unchanged"] > 0


KILL_SCRIPT = """
import sys
from pathlib import Path
from neat.config.indexing import IndexingConfig
from neat.indexing import MarkdownIndexer
indexer = MarkdownIndexer(Path(sys.argv[1]), IndexingConfig())
print("started", flush=True)
indexer.build([Path(sys.argv[2])])
print("finished", flush=True)
"""


def test_kill_9_during_a_build_leaves_a_consistent_index(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    n_files = 600
    for i in range(n_files):
        body = "\n".join(
            section(f"Part {j} of note {i}", f"Words about topic {i * 7 + j}; more text here.")
            for j in range(6)
        )
        (corpus / f"n{i:04d}.md").write_text(f"# Note {i}\n\n{body}", encoding="utf-8")
    db = tmp_path / "kill.db"
    rng = random.Random(7)
    partial = 0
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, str(db), str(corpus)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with MarkdownIndexer(db, IndexingConfig()) as ix:
            report = ix.check()
            assert {p["kind"] for p in report["problems"]} <= {"file_new"}, report["problems"]
            assert_no_duplicates(db)
            partial += 0 < len(ix.files()) < n_files
    assert partial >= 1  # at least one kill landed mid-build
    with MarkdownIndexer(db, IndexingConfig()) as ix:
        ix.build([corpus])
        assert ix.check() == {
            "ok": True,
            "consistent": True,
            "damaged": [],
            "stale": [],
            "problems": [],
            "repaired": [],
            "remaining": [],
        }
        assert len(ix.files()) == n_files
        assert_no_duplicates(db)


def test_check_finds_disk_changes_and_repairs_them(indexer: MarkdownIndexer, docs: Path) -> None:
    indexer.build([docs])
    assert indexer.check()["ok"]
    write(docs / "animals.md", "# Animals\n\n" + section("Owls", "They hunt at night."))
    (docs / "tools.md").unlink()
    write(docs / "new.md", "# New\n\nfresh text\n")
    report = indexer.check()
    assert not report["ok"]
    assert report["consistent"] and report["damaged"] == []  # out of date, not damaged
    found = {(p["kind"], Path(p["path"]).name) for p in report["problems"]}
    assert found == {
        ("file_changed", "animals.md"),
        ("file_missing", "tools.md"),
        ("file_new", "new.md"),
    }
    assert report["stale"] == report["problems"]
    fixed = indexer.check(repair=True)
    assert fixed["ok"] and fixed["remaining"] == [] and len(fixed["repaired"]) == 3
    assert indexer.search("owls night")[0].heading_path == ("Animals", "Owls")
    assert indexer.check()["ok"]


def test_check_repairs_rows_deleted_behind_its_back(indexer: MarkdownIndexer, docs: Path) -> None:
    indexer.build([docs])
    conn = sqlite3.connect(indexer.db)
    conn.execute("DELETE FROM chunks WHERE path = 'animals.md'")  # full-text rows stay behind
    conn.execute(
        "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE path = 'tools.md')"
    )
    conn.commit()
    conn.close()
    assert indexer.search("hammer") == []
    report = indexer.check()
    kinds = {(p["kind"], Path(p["path"]).name) for p in report["problems"]}
    assert {("fts_orphan", "index.db"), ("chunks_missing", "animals.md")} <= kinds
    assert not report["consistent"] and report["damaged"] == report["problems"]
    assert ("fts_mismatch", "tools.md") in kinds
    fixed = indexer.check(repair=True)
    assert fixed["ok"], fixed["remaining"]
    assert indexer.search("hammer")[0].path == str(docs / "tools.md")
    assert indexer.search("zebra")[0].path == str(docs / "animals.md")
    assert_no_duplicates(indexer.db)


def test_bm25_finds_a_section_by_its_heading_path(indexer: MarkdownIndexer, docs: Path) -> None:
    indexer.build([docs])
    hit = indexer.search("zebra migration", k=3)[0]
    assert hit.path == str(docs / "animals.md")
    assert hit.heading_path == ("Animals", "Zebra Migration")
    # file lines, front matter included; the body-less H1 opens its first child's chunk
    assert (hit.start_line, hit.end_line) == (4, 8)
    assert hit.score > 0 and "Herds cross the river" in hit.snippet
    panic = indexer.search("unrecoverable errors panic", k=5)
    assert any(h.path.endswith("ch09-01-unrecoverable-errors-with-panic.md") for h in panic)
    assert all(len(h.snippet) <= 200 for h in panic)


@pytest.mark.parametrize("query", ["Vec<T>", '"', "AND OR", "-", "*", "", "   ", "NEAR(x", "a:b"])
def test_nasty_queries_never_raise(indexer: MarkdownIndexer, docs: Path, query: str) -> None:
    indexer.build([docs])
    hits = indexer.search(query, k=5)
    if not re.search(r"[^\W_]", query):
        assert hits == []


def test_dense_and_hybrid_with_a_real_model(docs: Path, tmp_path: Path, tiny_model: Path) -> None:
    embedder: IEmbedder = SentenceTransformerEmbedder(tiny_model)
    with MarkdownIndexer(tmp_path / "i.db", IndexingConfig(), embedder=embedder) as ix:
        ix.build([docs])
        target = next(c for c in ix.chunks() if c.heading_path[-1:] == ("Penguins",))
        dense = ix.search(target.search_text, k=5, mode="dense")
        assert len(dense) == 5
        assert dense[0].heading_path == target.heading_path
        assert dense[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.score for h in dense] == sorted((h.score for h in dense), reverse=True)
        hybrid = ix.search("penguins huddle cold", k=4, mode="hybrid")
        assert len(hybrid) == 4 and hybrid[0].heading_path == ("Animals", "Penguins")
        assert hybrid[0].score <= 2 / (60 + 1)
        # an edit reaches the dense leg without reopening the indexer
        write(docs / "tools.md", "# Tools\n\n" + section("Saw", "Cuts planks of oak."))
        ix.build([docs])
        saw = next(c for c in ix.chunks() if c.heading_path[-1:] == ("Saw",))
        assert ix.search(saw.search_text, k=1, mode="dense")[0].heading_path == saw.heading_path
        assert ix.check()["ok"]


def test_convex_fusion_keeps_bm25s_order_at_weight_zero(
    docs: Path, tmp_path: Path, tiny_model: Path
) -> None:
    embedder: IEmbedder = SentenceTransformerEmbedder(tiny_model)
    db = tmp_path / "i.db"
    with MarkdownIndexer(db, IndexingConfig(), embedder=embedder) as ix:
        ix.build([docs])
    query = "penguins huddle cold"
    for weight in (0.0, 0.3, 1.0):
        config = IndexingConfig(fusion="convex", dense_weight=weight)
        with MarkdownIndexer(db, config, embedder=embedder) as ix:
            hybrid = ix.search(query, k=4, mode="hybrid")
            lexical = ix.search(query, k=4, mode="bm25")
            dense = ix.search(query, k=4, mode="dense")
        assert len(hybrid) == 4 and all(0.0 <= h.score <= 1.0 for h in hybrid)
        if weight == 0.0:
            assert [h.start_line for h in hybrid[: len(lexical)]] == [h.start_line for h in lexical]
        if weight == 1.0:
            assert [h.start_line for h in hybrid] == [h.start_line for h in dense]


def test_dense_without_an_embedder_is_a_config_error(indexer: MarkdownIndexer, docs: Path) -> None:
    indexer.build([docs])
    for mode in ("dense", "hybrid"):
        with pytest.raises(ConfigError, match=r"indexing\.embedder"):
            indexer.search("zebra", mode=mode)
    with pytest.raises(ConfigError, match="unknown search mode"):
        indexer.search("zebra", mode="fuzzy")
    hybrid_default = IndexingConfig(mode="hybrid")
    with MarkdownIndexer(indexer.db, hybrid_default) as ix, pytest.raises(ConfigError):
        ix.search("zebra")


def test_documents_and_fingerprint(indexer: MarkdownIndexer, docs: Path) -> None:
    indexer.build([docs])
    files = list(indexer.documents("file"))
    assert [d.source for d in files] == sorted(d.source for d in files)
    animals = next(d for d in files if d.source == str(docs / "animals.md"))
    assert animals.text.startswith("# Animals") and "title:" not in animals.text
    chunks = list(indexer.documents("chunk"))
    assert len(chunks) == len(indexer.chunks())
    zebra = next(d for d in chunks if d.metadata["heading_path"] == ["Animals", "Zebra Migration"])
    assert zebra.text.startswith("Animals > Zebra Migration\n# Animals\n\n## Zebra Migration")
    assert list(indexer.documents("chunk")) == chunks
    guide = list(indexer.documents("file", roots=[docs / "guide"]))
    assert {Path(d.source).name for d in guide} == {"install.md", "usage.md"}

    fingerprint = indexer.fingerprint()
    guide_fingerprint = indexer.fingerprint(roots=[docs / "guide"])
    os.utime(docs / "tools.md", ns=(1, 1))
    indexer.build([docs])
    assert indexer.fingerprint() == fingerprint  # a touch is no change
    write(docs / "tools.md", "# Tools\n\nchanged\n")
    indexer.build([docs])
    assert indexer.fingerprint() != fingerprint
    assert indexer.fingerprint(roots=[docs / "guide"]) == guide_fingerprint
    with pytest.raises(ConfigError, match="unit"):
        list(indexer.documents("page"))  # type: ignore[arg-type]


def test_a_same_size_edit_within_one_mtime_tick_is_not_missed(
    indexer: MarkdownIndexer, tmp_path: Path
) -> None:
    doc = write(tmp_path / "d" / "a.md", "# A\n\nteh cat\n")
    stamp = time.time_ns()
    os.utime(doc, ns=(stamp, stamp))
    indexer.build([doc.parent])
    doc.write_text("# A\n\nthe cat\n", encoding="utf-8")  # same size ...
    os.utime(doc, ns=(stamp, stamp))  # ... and same mtime (a coarse file system)
    report = indexer.build([doc.parent])
    assert report["updated"] == 1
    assert indexer.search("the cat")[0].snippet == "# A the cat"
