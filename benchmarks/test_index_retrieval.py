"""Retrieval quality of the markdown index: section-heading queries on three corpora.

Every unique H2/H3 heading of a corpus is a query and its section the answer, with the heading
replaced by a neutral one in the indexed copy, so it is in neither the text nor the heading path
(benchmarks/retrieval.py; docs/research/indexing.md §5). The corpora are the Rust book, the
standard library's pydoc topics and the installed packages' docs (the last two written offline
by benchmarks/retrieval_corpora.py), so a gain is not tuned to one corpus. Figures are
recall@10, MRR@10 and nDCG@10 over sections (`neat.indexing.metrics.evaluate_run`), and query
latency.

bm25 runs always (a few seconds per corpus). dense and hybrid need a real sentence-transformers
model folder in NEAT_BENCH_EMBEDDER, and `dense:neat`/`hybrid:neat` a NeatEmbedder folder in
NEAT_BENCH_NEAT_EMBEDDER; they are slow (embedding the book's ~900 chunks takes minutes on 2
CPU cores):

    NEAT_BENCH_EMBEDDER=/path/to/all-MiniLM-L6-v2 python -m pytest \\
        benchmarks/test_index_retrieval.py --benchmark-only -s -m "slow or not slow"

Targets: none for the figures themselves (they decide the default search mode); sanity only:
every metric in [0, 1], bm25 nDCG@10 > 0.2.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from retrieval import (
    CORPORA,
    K,
    RetrievalBenchmark,
    build_benchmark,
    corpus_source,
    neat_embedder,
    open_indexer,
    table,
)

from neat.indexing.embedders import SentenceTransformerEmbedder
from neat.indexing.indexer import MarkdownIndexer

MODEL_ENV = "NEAT_BENCH_EMBEDDER"
NEAT_MODEL_ENV = "NEAT_BENCH_NEAT_EMBEDDER"
# Fewest queries each corpus must yield: a labelling change that loses most of them shows.
MIN_QUERIES = {"rust_book": 300, "pydoc_topics": 80, "package_docs": 200}


def _opted_in(config: pytest.Config) -> bool:
    return "slow" in (config.getoption("markexpr", "") or "")


@pytest.fixture(scope="module", params=CORPORA)
def corpus(request: pytest.FixtureRequest) -> str:
    """The corpus name; module scope groups each corpus's tests around one index."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def bench(corpus: str, tmp_path_factory: pytest.TempPathFactory) -> RetrievalBenchmark:
    src, skip = corpus_source(corpus, tmp_path_factory.mktemp(f"{corpus}-source"))
    return build_benchmark(src, tmp_path_factory.mktemp(corpus), skip)


@pytest.fixture(scope="module")
def results(corpus: str, bench: RetrievalBenchmark) -> Iterator[dict[str, dict[str, float]]]:
    """Rows of the table printed once all modes of the corpus have run."""
    rows: dict[str, dict[str, float]] = {}
    yield rows
    if rows:
        files = len(bench.sections)
        sections = sum(len(s) for s in bench.sections.values())
        print(
            f"\n{corpus} section-heading retrieval (k={K}; {files} files, {sections} sections):"
            f"\n{table(rows)}"
        )


@pytest.fixture(scope="module")
def lexical_index(
    bench: RetrievalBenchmark, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MarkdownIndexer, float]]:
    started = time.perf_counter()
    indexer = open_indexer(bench.corpus, tmp_path_factory.mktemp("bm25") / "index.db")
    yield indexer, time.perf_counter() - started
    indexer.close()


@pytest.fixture(scope="module")
def dense_index(
    bench: RetrievalBenchmark, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MarkdownIndexer, float]]:
    """One index with vectors, shared by dense and hybrid: embedding is the expensive part."""
    model = os.environ.get(MODEL_ENV)
    if not model:
        pytest.skip(f"needs a sentence-transformers model folder in {MODEL_ENV}")
    embedder = SentenceTransformerEmbedder(Path(model))
    started = time.perf_counter()
    indexer = open_indexer(bench.corpus, tmp_path_factory.mktemp("dense") / "index.db", embedder)
    yield indexer, time.perf_counter() - started
    indexer.close()


@pytest.fixture(scope="module")
def neat_index(
    bench: RetrievalBenchmark, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MarkdownIndexer, float]]:
    """As `dense_index`, with neat's own embedder (neat.indexing.neat_embedder, imported only
    when NEAT_BENCH_NEAT_EMBEDDER is set, so this file runs without that module)."""
    model = os.environ.get(NEAT_MODEL_ENV)
    if not model:
        pytest.skip(f"needs a NeatEmbedder folder in {NEAT_MODEL_ENV}")
    embedder = neat_embedder(Path(model))
    started = time.perf_counter()
    indexer = open_indexer(bench.corpus, tmp_path_factory.mktemp("neat") / "index.db", embedder)
    yield indexer, time.perf_counter() - started
    indexer.close()


_INDEX_OF = {
    "bm25": "lexical_index",
    "dense": "dense_index",
    "hybrid": "dense_index",
    "dense:neat": "neat_index",
    "hybrid:neat": "neat_index",
}


@pytest.mark.benchmark(group="index-retrieval")
@pytest.mark.parametrize(
    "mode",
    [
        "bm25",
        pytest.param("dense", marks=pytest.mark.slow),
        pytest.param("hybrid", marks=pytest.mark.slow),
        pytest.param("dense:neat", marks=pytest.mark.slow),
        pytest.param("hybrid:neat", marks=pytest.mark.slow),
    ],
)
def test_section_heading_retrieval(
    benchmark: Any,
    request: pytest.FixtureRequest,
    corpus: str,
    bench: RetrievalBenchmark,
    results: dict[str, dict[str, float]],
    mode: str,
) -> None:
    if mode != "bm25" and not _opted_in(request.config):
        pytest.skip("opt-in: embeds the whole corpus; run with -m slow")
    indexer, build_s = request.getfixturevalue(_INDEX_OF[mode])
    search_mode = mode.split(":")[0]
    bench.evaluate(
        indexer, search_mode
    )  # untimed warm-up: torch's first calls per input shape are slow
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["metrics"], outcome["seconds"] = bench.evaluate(indexer, search_mode)

    benchmark.pedantic(run, rounds=1, iterations=1)
    metrics: dict[str, float] = outcome["metrics"]
    seconds: list[float] = sorted(outcome["seconds"])
    p50 = 1000 * statistics.median(seconds)
    p99 = 1000 * seconds[min(len(seconds) - 1, round(0.99 * (len(seconds) - 1)))]
    chunks = indexer.stats()["chunks"]
    figures = {**metrics, "p50_ms": p50, "p99_ms": p99, "build_s": build_s, "chunks": chunks}
    results[mode] = figures
    benchmark.extra_info.update({"corpus": corpus, "mode": mode, **figures})
    print(
        f"\n{corpus} {mode}: {int(metrics['queries'])} queries, "
        f"recall@{K} {metrics[f'recall@{K}']:.3f}, "
        f"MRR@{K} {metrics[f'mrr@{K}']:.3f}, nDCG@{K} {metrics[f'ndcg@{K}']:.3f}; "
        f"search p50 {p50:.1f} ms, p99 {p99:.1f} ms; index of {chunks} chunks built in "
        f"{build_s:.1f} s"
    )
    assert metrics["queries"] == len(bench.queries) > MIN_QUERIES[corpus]
    for name in (f"recall@{K}", f"mrr@{K}", f"ndcg@{K}"):
        assert 0.0 <= metrics[name] <= 1.0, name
    if mode == "bm25":
        assert metrics[f"ndcg@{K}"] > 0.2
