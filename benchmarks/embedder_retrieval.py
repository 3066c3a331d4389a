"""neat's own embedder on the section-heading benchmarks: BM25, then `neat index
train-embedder` on the benchmark's rewritten corpus alone (the headings that are the queries
are not in it), then dense and hybrid search with the result.

    python benchmarks/embedder_retrieval.py [--corpus rust_book,pydoc_topics,package_docs]
        [--steps 300] [--out DIR] [--reuse] [--set KEY=VALUE ...]

Prints, per corpus, recall@10 / MRR@10 / nDCG@10 of bm25, dense, hybrid (rank fusion) and
hybrid_convex (`indexing.fusion: convex`, dense_weight 0.3), and the training seconds (the
whole command: pairs, BPE, training, evaluations). `--reuse` keeps an embedder already
trained under DIR (evaluations only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from retrieval import CORPORA, build_benchmark, corpus_source, open_indexer

from neat.indexing.neat_embedder import NeatEmbedder


def run(
    corpus: str, work: Path, steps: int, overrides: list[str], reuse: bool = False
) -> dict[str, object]:
    src, skip = corpus_source(corpus, work / "sources")
    bench = build_benchmark(src, work / corpus / "corpus", skip)
    rows: dict[str, object] = {"queries": len(bench.queries)}
    lexical = open_indexer(bench.corpus, work / corpus / "bm25.db")
    rows["bm25"], _ = bench.evaluate(lexical, "bm25")
    lexical.close()
    out = work / corpus / "embedder"
    command = [sys.executable, "-m", "neat", "--log-level", "WARNING", "index"]
    command += ["train-embedder", "--db", str(work / corpus / "bm25.db"), "--out", str(out)]
    command += ["--steps", str(steps), "--set", "monitoring.progress=plain"]
    command += [arg for o in overrides for arg in ("--set", o)]
    if not (reuse and (out / "run" / "checkpoints").is_dir()):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        rows["train_s"] = round(time.perf_counter() - started, 1)
    dense = open_indexer(bench.corpus, work / corpus / "dense.db", NeatEmbedder(out))
    for mode in ("dense", "hybrid"):
        rows[mode], _ = bench.evaluate(dense, mode)
    dense.config = dense.config.model_copy(update={"fusion": "convex"})
    rows["hybrid_convex"], _ = bench.evaluate(dense, "hybrid")
    dense.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=",".join(CORPORA))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--reuse", action="store_true", help="keep embedders trained in --out")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="embedder-retrieval-"))
    for corpus in args.corpus.split(","):
        rows = run(corpus, work, args.steps, args.overrides, args.reuse)
        shown = {
            k: {m: round(v, 3) for m, v in r.items()} if isinstance(r, dict) else r
            for k, r in rows.items()
        }
        print(corpus, json.dumps(shown), flush=True)


if __name__ == "__main__":
    main()
