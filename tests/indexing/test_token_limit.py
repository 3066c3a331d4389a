"""Long chunks under an embedder's token limit: stored whole, embedded in pieces that fit
(pooled), nothing cut without a count. Real tiny model, real files, real SQLite."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from neat.cli.index import _build_summary
from neat.config.indexing import IndexingConfig
from neat.indexing.embedders import SentenceTransformerEmbedder
from neat.indexing.indexer import MarkdownIndexer, chunker_key
from neat.indexing.markdown import parse_markdown
from neat.indexing.records import CHUNKER_VERSION, search_text
from neat.indexing.store import IndexStore
from neat.indexing.token_limit import FitReport, embedding_pieces, token_limit
from tests.indexing.tiny_models import TINY_MAX_SEQ_LENGTH, build_tiny_sentence_transformer

SENTENCE = "The index stores chunks and hashes in a SQLite database near the river bank."


def long_section() -> str:
    """One section far over 128 tokens: paragraphs, a list of lines, and a paragraph of one
    line of many sentences (only sentence and word breaks can split it)."""
    paragraphs = [" ".join([SENTENCE] * 3) + f" Paragraph {i}." for i in range(4)]
    items = "\n".join(f"- item {i}: copy files with cp and move them with mv" for i in range(12))
    one_line = " ".join(
        f"Sentence number {i} is about BM25 and dense retrieval." for i in range(20)
    )
    code = "```python\n" + "\n".join(f"value_{i} = compute({i})" for i in range(15)) + "\n```"
    return "\n\n".join(
        ["# Guide", "## Indexing", *paragraphs, items, one_line, code, "## Short", "Tiny."]
    )


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> SentenceTransformerEmbedder:
    folder = build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))
    return SentenceTransformerEmbedder(folder)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "guide.md").write_text(long_section() + "\n", encoding="utf-8")
    return root


@pytest.fixture
def indexer(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Iterator[MarkdownIndexer]:
    with MarkdownIndexer(tmp_path / "index.db", IndexingConfig(), embedder=embedder) as ix:
        yield ix


def non_space(texts: list[str]) -> str:
    return "".join("".join(text.split()) for text in texts)


def stored_vectors(db: Path, dim: int) -> dict[tuple[tuple[str, ...], str], np.ndarray]:
    """(heading path, text) -> the vector the index holds for that chunk."""
    store = IndexStore(db)
    try:
        ids, matrix = store.load_vectors(dim)
        rows = {r.id: (r.heading_path, r.text) for r in store.file_chunks()}
    finally:
        store.close()
    return {rows[int(i)]: row for i, row in zip(ids, matrix, strict=True)}


def pooled(embedder: SentenceTransformerEmbedder, texts: list[str]) -> np.ndarray:
    mean = embedder.embed(texts).mean(axis=0)
    return mean / np.linalg.norm(mean)


def test_embedder_reports_its_token_limit(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.max_tokens == TINY_MAX_SEQ_LENGTH - 2  # [CLS] and [SEP]
    short, long = embedder.token_count(["markdown", "markdown " * 300])
    assert short == 1
    assert long == 300


def test_chunk_over_the_token_limit_is_embedded_in_pieces_and_no_text_is_lost(
    docs: Path, indexer: MarkdownIndexer, embedder: SentenceTransformerEmbedder
) -> None:
    source = (docs / "guide.md").read_text(encoding="utf-8")
    plain = parse_markdown(source, "guide.md", IndexingConfig().chunking).chunks
    long = max(plain, key=lambda c: embedder.token_count([c.search_text])[0])
    assert embedder.token_count([long.search_text])[0] > 3 * embedder.max_tokens

    report = indexer.build([docs])

    assert indexer.chunks() == plain  # stored whole: BM25 and line numbers as without a limit
    limit = token_limit(embedder)
    [pieces] = embedding_pieces([(long.heading_path, long.text)], limit, FitReport())
    assert len(pieces) > 3
    assert max(embedder.token_count(pieces)) <= embedder.max_tokens
    prefix = search_text(long.heading_path, "")
    assert all(p.startswith(prefix) for p in pieces)  # each piece keeps the heading path
    assert non_space([p[len(prefix) :] for p in pieces]) == non_space([long.text])
    vectors = stored_vectors(indexer.db, embedder.dim)
    np.testing.assert_allclose(
        vectors[(long.heading_path, long.text)], pooled(embedder, pieces), atol=1e-6
    )
    assert report["chunks_split"] >= 1
    assert report["chunks_truncated"] == 0
    assert report["embedded"] == len({c.content_hash for c in plain})
    assert "embedded in pieces" in _build_summary(report)
    assert indexer.stats()["last_build"]["chunks_split"] == report["chunks_split"]
    again = indexer.build([docs])
    assert again["unchanged"] == 1
    assert again["chunks_split"] == 0 and again["embedded"] == 0


def test_unbreakable_run_is_embedded_truncated_and_counted(
    tmp_path: Path, indexer: MarkdownIndexer, embedder: SentenceTransformerEmbedder
) -> None:
    root = tmp_path / "blob"
    root.mkdir()
    # One 600-character run without whitespace: hundreds of tokens (WordPiece reads a word
    # over 100 characters as one [UNK], so the run has punctuation, as base64 does).
    blob = "QUJD+" * 120
    source = f"# Data\n\n{SENTENCE}\n\n{blob}\n\nAfter.\n"
    (root / "blob.md").write_text(source, encoding="utf-8")

    report = indexer.build([root])

    plain = parse_markdown(source, "blob.md", IndexingConfig().chunking).chunks
    assert indexer.chunks() == plain
    assert report["chunks_truncated"] >= 1
    pieces = embedding_pieces(
        [(c.heading_path, c.text) for c in plain], token_limit(embedder), FitReport()
    )
    over = embedder.token_count([p for texts in pieces for p in texts])
    assert sum(n > embedder.max_tokens for n in over) == report["chunks_truncated"]


def test_index_without_embedder_chunks_as_before(docs: Path, tmp_path: Path) -> None:
    config = IndexingConfig()
    source = (docs / "guide.md").read_text(encoding="utf-8")
    with MarkdownIndexer(tmp_path / "bm25.db", config) as ix:
        report = ix.build([docs])
        assert ix.chunks() == parse_markdown(source, "guide.md", config.chunking).chunks
    assert report["chunks_split"] == 0
    assert report["chunks_truncated"] == 0
    chunking = config.chunking
    assert chunker_key(chunking) == (
        f"{CHUNKER_VERSION}/{chunking.max_chars}/{chunking.overlap_chars}"
    )
    assert "token limit" not in _build_summary(report)


def test_adding_an_embedder_keeps_the_chunks_and_embeds_them(
    docs: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    db = tmp_path / "switch.db"
    with MarkdownIndexer(db, IndexingConfig()) as ix:
        ix.build([docs])
        plain = ix.chunks()
    with MarkdownIndexer(db, IndexingConfig(), embedder=embedder) as ix:
        report = ix.build([docs])
        assert report["unchanged"] == 1 and report["updated"] == 0
        assert ix.chunks() == plain
        assert report["embedded"] == len({c.content_hash for c in plain})
        assert report["chunks_split"] >= 1


class PlainEmbedder:
    """A user's embedder with only `dim` and `embed`: no token limit, chunks left alone."""

    dim = 4

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.ones((len(texts), self.dim), dtype=np.float32)
        rows[:, 0] = [len(t) for t in texts]
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_embedder_without_token_limit_keeps_chunks(docs: Path, tmp_path: Path) -> None:
    config = IndexingConfig()
    source = (docs / "guide.md").read_text(encoding="utf-8")
    with MarkdownIndexer(tmp_path / "plain.db", config, embedder=PlainEmbedder()) as ix:
        report = ix.build([docs])
        assert ix.chunks() == parse_markdown(source, "guide.md", config.chunking).chunks
        assert ix.search("SQLite database", k=3, mode="dense")
    assert report["chunks_split"] == 0
    assert report["embedded"] > 0
