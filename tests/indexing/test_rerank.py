"""`indexing.rerank`: a real index (files on disk, SQLite) re-ranked by a tiny local
cross-encoder, checked against the cross-encoder's own `predict`."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.config.indexing import CrossEncoderRerankConfig, IndexingConfig
from neat.config.loader import dump_config
from neat.errors import ConfigError
from neat.indexing import MarkdownIndexer
from neat.indexing.records import search_text
from neat.indexing.rerank import CrossEncoderReranker
from neat.interfaces import SearchHit
from tests.indexing.tiny_models import build_tiny_cross_encoder

QUERY = "model training with the optimizer"
TOPICS = (
    "Training a model needs data, a tokenizer and an optimizer.",
    "The optimizer updates the model weights after every step.",
    "A checkpoint saves the model and the optimizer state.",
    "Search the index for a model or a training example.",
    "Markdown files are split into chunks for the index.",
    "The model reads the tokens and predicts the next one.",
    "Training stops early when the validation loss stops falling.",
    "Copy the model folder to another machine to use it there.",
)


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """Sixteen sections that all match QUERY somewhat, so the candidates outnumber k."""
    root = tmp_path / "docs"
    root.mkdir()
    for n in range(4):
        body = "".join(
            f"## Part {n}.{i}\n\n{TOPICS[(n + i) % len(TOPICS)]} Note {n} {i}.\n\n"
            for i in range(4)
        )
        (root / f"guide{n}.md").write_text(f"# Guide {n}\n\n{body}", encoding="utf-8")
    return root


class RecordingReranker(CrossEncoderReranker):
    """The real reranker, remembering the candidates each search handed it."""

    calls: list[list[tuple[int, str]]]

    def rerank(self, query: str, candidates: Sequence[tuple[int, str]]) -> list[tuple[int, float]]:
        self.calls = [*getattr(self, "calls", []), list(candidates)]
        return super().rerank(query, candidates)


def built(docs: Path, tmp_path: Path, config: IndexingConfig, **kwargs: object) -> MarkdownIndexer:
    indexer = MarkdownIndexer(tmp_path / "index.db", config, **kwargs)  # type: ignore[arg-type]
    indexer.build([docs])
    return indexer


def chunk_texts(indexer: MarkdownIndexer, hits: Sequence[SearchHit]) -> list[str]:
    """What the cross-encoder should see for each hit: heading path, then the chunk text."""
    out = []
    for hit in hits:
        (chunk,) = [c for c in indexer.chunks(hit.path) if c.start_line == hit.start_line]
        out.append(search_text(chunk.heading_path, chunk.text))
    return out


def key(hit: SearchHit) -> tuple[str, int]:
    return hit.path, hit.start_line


@pytest.mark.parametrize(("top", "k"), [(8, 3), (2, 5)])
def test_results_are_the_candidates_reordered_by_the_cross_encoders_scores(
    docs: Path, tmp_path: Path, cross_encoder: Path, top: int, k: int
) -> None:
    from sentence_transformers import CrossEncoder

    reranker = RecordingReranker(cross_encoder, top=top)
    with built(docs, tmp_path, IndexingConfig(mode="bm25"), reranker=reranker) as indexer:
        depth = max(top, k)
        plain = indexer.search(QUERY, k=depth, rerank=False)
        assert len(plain) == depth  # the corpus has more matches than that
        hits = indexer.search(QUERY, k=k)
        texts = chunk_texts(indexer, plain)

    assert [text for _, text in reranker.calls[0]] == texts  # the mode's top max(top, k)
    scores = CrossEncoder(str(cross_encoder), device="cpu").predict([(QUERY, t) for t in texts])
    order = np.argsort(-np.asarray(scores), kind="stable")[:k]
    assert len(hits) == k
    assert [key(h) for h in hits] == [key(plain[i]) for i in order]
    assert [h.score for h in hits] == pytest.approx([float(scores[i]) for i in order], abs=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    snippets = {key(h): h.snippet for h in plain}  # the same snippet bm25 gives the chunk
    assert all(h.snippet == snippets[key(h)] for h in hits)


def test_rerank_false_and_no_config_give_the_modes_own_ranking(
    docs: Path, tmp_path: Path, cross_encoder: Path
) -> None:
    rerank = CrossEncoderRerankConfig(path=str(cross_encoder), top=6)
    with built(docs, tmp_path, IndexingConfig(mode="bm25", rerank=rerank)) as indexer:
        assert isinstance(indexer.reranker, CrossEncoderReranker)
        assert indexer.reranker.top == 6
        reranked = indexer.search(QUERY, k=4)
        plain = indexer.search(QUERY, k=4, rerank=False)
        assert indexer.search("  ", k=4) == []
    with MarkdownIndexer(tmp_path / "index.db", IndexingConfig(mode="bm25")) as bare:
        assert bare.reranker is None
        assert bare.search(QUERY, k=4) == plain
    assert [h.score for h in reranked] != [h.score for h in plain]  # cross-encoder's


class HashingEmbedder:
    """Deterministic bag-of-words vectors, so dense and hybrid candidates need no model."""

    dim = 64
    fingerprint = "hashing:rerank-test"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.sha256(word.encode()).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_dense_and_hybrid_candidates_are_reranked_too(
    docs: Path, tmp_path: Path, cross_encoder: Path, mode: str
) -> None:
    reranker = RecordingReranker(cross_encoder, top=5)
    config = IndexingConfig(mode=mode)  # type: ignore[arg-type]
    with built(docs, tmp_path, config, embedder=HashingEmbedder(), reranker=reranker) as indexer:
        plain = indexer.search(QUERY, k=5, rerank=False)
        hits = indexer.search(QUERY, k=2)
        texts = chunk_texts(indexer, plain)
    assert [text for _, text in reranker.calls[0]] == texts
    expected = reranker.scores(QUERY, texts)
    assert [h.score for h in hits] == pytest.approx(sorted(expected, reverse=True)[:2], abs=1e-6)


def test_a_missing_folder_is_refused_naming_the_path_and_key(docs: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    config = IndexingConfig(rerank=CrossEncoderRerankConfig(path=str(missing)))
    with built(docs, tmp_path, config) as indexer:  # building never needs the reranker
        with pytest.raises(ConfigError, match=r"indexing\.rerank\.path") as info:
            indexer.search(QUERY)
        assert indexer.search(QUERY, rerank=False)
    assert str(missing) in str(info.value)


def test_a_folder_without_a_cross_encoder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    reranker = CrossEncoderReranker(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"cross-encoder .*indexing\.rerank\.path"):
        reranker.rerank(QUERY, [(1, "text")])


def test_config_key_is_validated_and_round_trips(tmp_path: Path, cross_encoder: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(
        "data: {type: text, path: corpus.txt}\n"
        "indexing: {rerank: {type: cross_encoder, path: models/ce, top: 20}}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    rerank = config.indexing.rerank
    assert rerank is not None
    assert (rerank.type, rerank.top, rerank.batch_size, rerank.device) == (
        "cross_encoder",
        20,
        32,
        "cpu",
    )
    assert Path(rerank.path) == tmp_path / "models" / "ce"  # against the config's folder
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(config), encoding="utf-8")
    assert load_config(again).indexing.rerank == rerank
    assert IndexingConfig().rerank is None

    for bad in ("{path: m, tops: 3}", "{path: m, top: 0}", "{type: colbert, path: m}", "{}"):
        path.write_text(
            f"data: {{type: text, path: corpus.txt}}\nindexing: {{rerank: {bad}}}\n",
            encoding="utf-8",
        )
        with pytest.raises(ConfigError, match=r"indexing\.rerank"):
            load_config(path)


def test_cli_search_reranks_and_no_rerank_skips_it(
    docs: Path, tmp_path: Path, cross_encoder: Path
) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(
        "data: {type: text, path: corpus.txt}\n"
        f"indexing: {{db: index.db, mode: bm25, rerank: {{path: '{cross_encoder}', top: 6}}}}\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(cli, ["index", "build", str(docs), "-c", str(config)])
    assert result.exit_code == 0, result.output

    def search(*flags: str) -> list[dict[str, object]]:
        args = ["index", "search", QUERY, "-c", str(config), "-k", "3", "--json", *flags]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        return list(json.loads(result.stdout))

    reranked, plain = search(), search("--no-rerank")
    with MarkdownIndexer(tmp_path / "index.db", IndexingConfig(mode="bm25")) as indexer:
        candidates = indexer.search(QUERY, k=6)
        texts = chunk_texts(indexer, candidates)
    assert [h["score"] for h in plain] == [h.score for h in candidates[:3]]
    expected = CrossEncoderReranker(cross_encoder).scores(QUERY, texts)
    assert [h["score"] for h in reranked] == pytest.approx(
        sorted(expected, reverse=True)[:3], abs=1e-6
    )

    config.write_text(
        f"data: {{type: text, path: corpus.txt}}\n"
        f"indexing: {{db: index.db, rerank: {{path: '{tmp_path / 'gone'}'}}}}\n",
        encoding="utf-8",
    )
    result = runner.invoke(cli, ["index", "search", QUERY, "-c", str(config)])
    assert result.exit_code == 2 and "indexing.rerank.path" in result.stderr
