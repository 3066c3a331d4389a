"""The labelled retrieval benchmarks: section-heading queries over a markdown corpus.

The Rust book (benchmarks/data/rust-book) is one corpus; `pydoc_topics` and `package_docs`
(benchmarks/retrieval_corpora.py, written offline from the Python and the venv) are two more,
so that a gain is not tuned to one corpus. All are labelled the same way:

Each H2/H3 heading of a chapter becomes a query, and the section it titles is the one relevant
item (docs/research/indexing.md §5). A copy of the corpus (its .md files, subfolders included)
is written with those headings replaced by neutral ones (`## Section 137`, numbers shuffled
so they say nothing about the content) on the same line, so the heading words are gone from
the section text and from the heading path the indexer stores and searches, and line numbers
stay those of the original.

Left out, to keep every label unambiguous and answerable: the Rust book's SUMMARY.md (a table
of contents, not content; it is not indexed either), sections whose own body has fewer than
200 characters, and headings whose text occurs more than once in the corpus ("Summary",
"Creating a New Project").

A section runs from its heading line to the line before the next H1-H3 heading (deeper headings
stay inside it), so sections never overlap and every chunk of the index falls in exactly one:
the one holding its start line. A heading with no body at all is folded into the section after
it, as the chunker folds it into that section's first chunk. Rankings are made per section:
search returns chunks, each maps to its section, and a section keeps its best rank only.

    python benchmarks/retrieval.py [--corpus rust_book|pydoc_topics|package_docs] [MODEL_DIR]

prints recall@10, MRR@10 and nDCG@10 for bm25 and, given a sentence-transformers model folder
(or NEAT_BENCH_EMBEDDER), for dense and hybrid; with NEAT_BENCH_NEAT_EMBEDDER (a NeatEmbedder
folder) also for its dense and hybrid, as `dense:neat` and `hybrid:neat`.
"""

from __future__ import annotations

import argparse
import bisect
import importlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from neat.config.indexing import IndexingConfig
from neat.indexing.embedders import SentenceTransformerEmbedder
from neat.indexing.indexer import MarkdownIndexer
from neat.indexing.metrics import evaluate_run
from neat.interfaces import IEmbedder, SearchHit

__all__ = [
    "CORPORA",
    "RUST_BOOK",
    "RetrievalBenchmark",
    "Section",
    "build_benchmark",
    "corpus_source",
    "open_indexer",
]

RUST_BOOK = Path(__file__).resolve().parent / "data" / "rust-book"
K = 10
# Chunks fetched per query: several chunks can map to one section, so more than K are needed
# to fill K distinct sections.
SEARCH_DEPTH = 50
MIN_BODY_CHARS = 200
LABELLED_LEVELS = (2, 3)
SKIP_FILES = frozenset({"SUMMARY.md"})
CORPORA = ("rust_book", "pydoc_topics", "package_docs")
SEED = 20240917
# Neutral headings are numbered from here: three digits never equal a small number in a query
# ("UTF-8").
FIRST_NUMBER = 100

_PARSER = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True, slots=True)
class Section:
    """Lines `start`..`end` (1-based, inclusive) of one file of the rewritten corpus; `query`
    is the original heading text when the section is labelled, else None."""

    id: str
    path: str
    start: int
    end: int
    query: str | None = None


@dataclass(slots=True)
class RetrievalBenchmark:
    """The rewritten corpus and its labels: query id -> text, query id -> relevant sections."""

    corpus: Path
    queries: dict[str, str]
    qrels: dict[str, set[str]]
    sections: dict[str, list[Section]]  # relative path -> sections in line order

    def section_of(self, hit: SearchHit) -> str | None:
        """The section holding the hit's first line; None for a file outside the corpus."""
        try:
            rel = Path(hit.path).resolve().relative_to(self.corpus.resolve()).as_posix()
        except ValueError:
            return None
        return _section_id(self.sections[rel], hit.start_line) if rel in self.sections else None

    def rank_sections(self, hits: Iterable[SearchHit], k: int = K) -> list[str]:
        """Section ids of `hits`, best first, each at its first rank only, at most `k`."""
        ranked: dict[str, None] = {}
        for hit in hits:
            section = self.section_of(hit)
            if section is not None:
                ranked.setdefault(section, None)
            if len(ranked) == k:
                break
        return list(ranked)

    def evaluate(
        self, indexer: MarkdownIndexer, mode: str, k: int = K
    ) -> tuple[dict[str, float], list[float]]:
        """`evaluate_run` figures for one search mode, and each query's search seconds."""
        run: dict[str, list[str]] = {}
        seconds: list[float] = []
        for qid, text in self.queries.items():
            started = time.perf_counter()
            hits = indexer.search(text, k=SEARCH_DEPTH, mode=mode)
            seconds.append(time.perf_counter() - started)
            run[qid] = self.rank_sections(hits, k)
        return evaluate_run(run, self.qrels, k=k), seconds


def corpus_source(name: str, work: Path) -> tuple[Path, frozenset[str]]:
    """The source folder of corpus `name` and the relative paths to leave out of it; the
    generated corpora are written under `work` first."""
    if name == "rust_book":
        return RUST_BOOK, SKIP_FILES
    from retrieval_corpora import BUILDERS  # imported late: it walks site-packages when run

    if name not in BUILDERS:
        raise ValueError(f"unknown corpus {name!r}; one of {', '.join(CORPORA)}")
    BUILDERS[name](work / name)
    return work / name, frozenset()


def build_benchmark(
    src: Path = RUST_BOOK, out: Path | None = None, skip: frozenset[str] = SKIP_FILES
) -> RetrievalBenchmark:
    """Label the .md files under `src` (recursively; `skip` names relative paths to leave out)
    and write the rewritten corpus to `out` (default: a new temporary folder).
    Deterministic: same input, same files, queries and ids."""
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="retrieval-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    rels = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.md") if p.is_file())
    files = [src / rel for rel in rels if rel not in skip]
    texts = {
        p.relative_to(src).as_posix(): p.read_text(encoding="utf-8").replace("\r\n", "\n")
        for p in files
    }
    headings = {name: _headings(text) for name, text in texts.items()}
    seen = Counter(_norm(title) for found in headings.values() for _, _, title in found)

    sections: dict[str, list[Section]] = {}
    lines_of: dict[str, list[str]] = {}
    labelled: list[tuple[str, int, int, str]] = []  # (file, 0-based heading line, level, text)
    for name, text in texts.items():
        lines = text.split("\n")
        lines_of[name] = lines
        sections[name] = []
        for start, heading, end, level, title in _partition(lines, headings[name]):
            body = "\n".join(lines[heading + 1 : end]).strip()
            query = None
            if (
                level in LABELLED_LEVELS
                and len(body) >= MIN_BODY_CHARS
                and seen[_norm(title)] == 1
                and lines[heading].lstrip().startswith("#")  # ATX: one line to replace
            ):
                query = title
                labelled.append((name, heading, level, title))
            sections[name].append(Section(f"{name}:{start + 1}", name, start + 1, end, query))

    numbers = list(range(FIRST_NUMBER, FIRST_NUMBER + len(labelled)))
    random.Random(SEED).shuffle(numbers)
    queries: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for qindex, (number, (name, line, level, title)) in enumerate(
        zip(numbers, labelled, strict=True)
    ):
        lines_of[name][line] = f"{'#' * level} Section {number}"
        qid = f"q{qindex:03d}"
        queries[qid] = title
        qrels[qid] = {_section_id(sections[name], line + 1)}
    for name, lines in lines_of.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("\n".join(lines), encoding="utf-8")
    return RetrievalBenchmark(out, queries, qrels, sections)


def _headings(text: str) -> list[tuple[int, int, str]]:
    """Top-level headings as (0-based line, level, plain text); headings in lists, quotes and
    code are content, as the chunker treats them."""
    tokens = _PARSER.parse(text)
    found = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.level == 0 and token.map is not None:
            title = _plain(tokens[i + 1].children or []) if i + 1 < len(tokens) else ""
            found.append((token.map[0], int(token.tag[1:]), " ".join(title.split())))
    return found


def _plain(tokens: Sequence[Token]) -> str:
    """A heading's words without markup: "The `match` Construct" -> "The match Construct"."""
    parts = []
    for token in tokens:
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif token.children:
            parts.append(_plain(token.children))
    return "".join(parts)


def _partition(
    lines: Sequence[str], headings: Sequence[tuple[int, int, str]]
) -> list[tuple[int, int, int, int, str]]:
    """The file cut at H1-H3 headings into (start, heading line, end, level, title), 0-based
    with an exclusive end. Lines before the first heading form a level-0 section; a heading
    with a blank body joins the section after it (whose start moves up to it)."""
    cuts = [(line, level, title) for line, level, title in headings if level <= 3]
    if not cuts or cuts[0][0] > 0:
        cuts.insert(0, (0, 0, ""))
    ends = [line for line, _, _ in cuts[1:]] + [len(lines)]
    merged: list[tuple[int, int, int, int, str]] = []
    carry: int | None = None  # start of an empty section waiting for the next one
    for i, ((heading, level, title), end) in enumerate(zip(cuts, ends, strict=True)):
        start = heading if carry is None else carry
        empty = not "".join(lines[heading + (level > 0) : end]).strip()
        if empty and i + 1 < len(cuts):
            carry = start
            continue
        carry = None
        merged.append((start, heading, end, level, title))
    return merged


def _section_id(sections: Sequence[Section], line: int) -> str:
    """The id of the section holding 1-based `line`."""
    starts = [s.start for s in sections]
    return sections[bisect.bisect_right(starts, line) - 1].id


def _norm(title: str) -> str:
    return " ".join(title.casefold().split())


def open_indexer(corpus: Path, db: Path, embedder: IEmbedder | None = None) -> MarkdownIndexer:
    """An indexer over `corpus` with default chunking, built before it is returned."""
    indexer = MarkdownIndexer(
        db, IndexingConfig(db=str(db), paths=[str(corpus)]), embedder=embedder
    )
    indexer.build()
    return indexer


def table(rows: dict[str, dict[str, float]]) -> str:
    """Metrics per mode as aligned text."""
    head = f"{'mode':<12}{'queries':>9}{'recall@10':>11}{'MRR@10':>9}{'nDCG@10':>9}{'p50 ms':>9}"
    body = [
        f"{mode:<12}{int(m['queries']):>9}{m['recall@10']:>11.3f}{m['mrr@10']:>9.3f}"
        f"{m['ndcg@10']:>9.3f}{m.get('p50_ms', float('nan')):>9.2f}"
        for mode, m in rows.items()
    ]
    return "\n".join([head, *body])


def neat_embedder(folder: Path) -> IEmbedder:
    """`neat.indexing.neat_embedder.NeatEmbedder` over `folder`, imported only when asked for
    (by name, so this file type-checks and runs whether or not that module exists yet)."""
    module = importlib.import_module("neat.indexing.neat_embedder")
    embedder: IEmbedder = module.NeatEmbedder(folder)
    return embedder


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("model", nargs="?", default=os.environ.get("NEAT_BENCH_EMBEDDER"))
    parser.add_argument("--corpus", choices=CORPORA, default="rust_book")
    args = parser.parse_args(argv)
    neat_model = os.environ.get("NEAT_BENCH_NEAT_EMBEDDER")
    work = Path(tempfile.mkdtemp(prefix="neat-retrieval-"))
    try:
        src, skip = corpus_source(args.corpus, work / "source")
        bench = build_benchmark(src, work / "corpus", skip)
        files = len(bench.sections)
        sections = sum(len(s) for s in bench.sections.values())
        print(f"{args.corpus}: {files} files, {sections} sections, {len(bench.queries)} queries")
        embedders: dict[str, IEmbedder | None] = {"": None}
        if args.model:
            embedders[""] = SentenceTransformerEmbedder(Path(args.model))
        if neat_model:
            embedders[":neat"] = neat_embedder(Path(neat_model))
        rows: dict[str, dict[str, float]] = {}
        for suffix, embedder in embedders.items():
            started = time.perf_counter()
            with open_indexer(bench.corpus, work / f"index{suffix[1:]}.db", embedder) as indexer:
                chunks = indexer.stats()["chunks"]
                print(f"built in {time.perf_counter() - started:.1f} s: {chunks} chunks")
                modes = ("dense", "hybrid") if embedder else ()
                for mode in ("bm25", *modes) if not suffix else modes:
                    metrics, seconds = bench.evaluate(indexer, mode)
                    p50 = 1000 * statistics.median(seconds)
                    rows[mode + suffix] = {**metrics, "p50_ms": p50}
        print(table(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
