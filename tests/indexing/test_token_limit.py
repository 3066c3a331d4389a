"""Chunks fit the embedder's token limit: over-long ones are split, not cut, and a piece that
cannot fit is counted as truncated. Real tiny model, real files, real SQLite."""

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
from neat.indexing.records import CHUNKER_VERSION, Chunk
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


def assert_pieces_match_lines(chunks: list[Chunk], source: str) -> None:
    """Each chunk's text lies within the file lines it claims, beginning on the first and
    ending on the last."""
    lines = source.split("\n")
    for chunk in chunks:
        span = "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        assert chunk.text in span, chunk
        assert chunk.text.split("\n")[0].strip() in lines[chunk.start_line - 1]
        assert chunk.text.split("\n")[-1].strip() in lines[chunk.end_line - 1]


def test_embedder_reports_its_token_limit(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.max_tokens == TINY_MAX_SEQ_LENGTH - 2  # [CLS] and [SEP]
    short, long = embedder.token_count(["markdown", "markdown " * 300])
    assert short == 1
    assert long == 300


def test_chunk_over_the_token_limit_is_split_and_no_text_is_lost(
    docs: Path, indexer: MarkdownIndexer, embedder: SentenceTransformerEmbedder
) -> None:
    source = (docs / "guide.md").read_text(encoding="utf-8")
    before = parse_markdown(source, "guide.md", IndexingConfig().chunking).chunks
    assert max(embedder.token_count([c.search_text for c in before])) > 3 * embedder.max_tokens

    report = indexer.build([docs])
    chunks = indexer.chunks()

    counts = embedder.token_count([c.search_text for c in chunks])
    assert max(counts) <= embedder.max_tokens
    assert len(chunks) > len(before)
    assert non_space([c.text for c in chunks]) == non_space([c.text for c in before])
    assert_pieces_match_lines(chunks, source)
    assert report["chunks_split"] >= 1
    assert report["chunks_truncated"] == 0
    assert report["embedded"] == len({c.content_hash for c in chunks})
    assert "embedded truncated" in _build_summary(report)
    assert indexer.stats()["last_build"]["chunks_split"] == report["chunks_split"]
    # Unchanged files are not re-chunked: the key is stable for the same embedder.
    again = indexer.build([docs])
    assert again["unchanged"] == 1
    assert again["chunks_split"] == 0


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
    chunks = indexer.chunks()

    assert report["chunks_truncated"] >= 1
    assert any(c.text == blob for c in chunks)
    over = embedder.token_count([c.search_text for c in chunks])
    assert sum(n > embedder.max_tokens for n in over) == report["chunks_truncated"]
    plain = parse_markdown(source, "blob.md", IndexingConfig().chunking).chunks
    assert non_space([c.text for c in chunks]) == non_space([c.text for c in plain])


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


def test_adding_an_embedder_with_a_limit_rechunks(
    docs: Path, tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    db = tmp_path / "switch.db"
    with MarkdownIndexer(db, IndexingConfig()) as ix:
        ix.build([docs])
        plain = len(ix.chunks())
    with MarkdownIndexer(db, IndexingConfig(), embedder=embedder) as ix:
        report = ix.build([docs])
        assert report["updated"] == 1 and report["unchanged"] == 0
        assert len(ix.chunks()) > plain


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
