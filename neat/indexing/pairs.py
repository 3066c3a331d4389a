"""Training pairs for a retriever, made from the indexed documents alone (no labels).

A pair is a short query and the passage that answers it, taken from structure every
document collection has:

- heading: a section's heading is a query for the section's body (heading removed);
- sentence: a sentence is a query for the rest of its chunk, the sentence cut out (the
  inverse cloze task of Lee et al. 2019, "Latent Retrieval for Weakly Supervised Open Domain
  Question Answering");
- code: the prose just before a fenced code block is a query for the block.

The passage never holds the query's own words verbatim where they came from, so the encoder
has to learn what a section is about rather than match strings. Hard negatives are the BM25
hits for the query that are not its own chunk (DPR, Karpukhin et al. 2020, found one BM25
negative per query worth more than many random ones).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from neat.indexing.records import search_text
from neat.indexing.store import IndexStore

__all__ = [
    "PairKind",
    "PassageChunk",
    "TrainingPair",
    "build_pairs",
    "code_pairs",
    "heading_pairs",
    "index_view",
    "mine_hard_negatives",
    "pairs_from_index",
    "read_pairs",
    "sentence_pairs",
    "write_pairs",
]

PairKind = Literal["heading", "sentence", "code", "doc2query"]

# A heading of fewer informative words ("Summary", "Section 12", "2.3") says too little to
# be a query for its section.
MIN_HEADING_WORDS = 2
# Sentences shorter than this are fragments ("See below."); longer ones read as passages.
MIN_SENTENCE_WORDS = 6
MAX_SENTENCE_WORDS = 40
# The rest of the chunk must still carry content once the sentence is cut out.
MIN_PASSAGE_WORDS = 20
MIN_CODE_LINES = 2

_WORD = re.compile(r"[^\W\d_]{2,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(\[])")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING_LINE = re.compile(r"^\s{0,3}#{1,6}\s")


@dataclass(frozen=True, slots=True)
class PassageChunk:
    """What the pair builder reads of one stored chunk (a store ChunkRow has these fields)."""

    id: int
    heading_path: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class TrainingPair:
    """A query, the passage that answers it and the chunk it came from; `negatives` are
    passages of other chunks that look like answers to BM25."""

    query: str
    passage: str
    chunk_id: int
    kind: PairKind
    negatives: tuple[str, ...] = field(default=())


def heading_pairs(chunks: Iterable[PassageChunk]) -> Iterator[TrainingPair]:
    """A section's first chunk answers its heading; the heading line and the heading's own
    place in the path are dropped from the passage."""
    for chunk in chunks:
        if not chunk.heading_path:
            continue
        lines = chunk.text.split("\n")
        if not lines or not _HEADING_LINE.match(lines[0]):
            continue  # a later piece of the section: its heading is not on it
        heading = chunk.heading_path[-1]
        if len(_WORD.findall(heading)) < MIN_HEADING_WORDS:
            continue
        # a parent heading with no body of its own is folded into this chunk: drop them all
        first = next(
            (i for i, line in enumerate(lines) if line.strip() and not _HEADING_LINE.match(line)),
            len(lines),
        )
        body = "\n".join(lines[first:]).strip()
        if len(_WORD.findall(body)) < MIN_PASSAGE_WORDS:
            continue
        yield TrainingPair(heading, search_text(chunk.heading_path[:-1], body), chunk.id, "heading")


def sentence_pairs(
    chunks: Iterable[PassageChunk], rng: random.Random, per_chunk: int = 2
) -> Iterator[TrainingPair]:
    """Up to `per_chunk` prose sentences of each chunk, each a query for the chunk without it."""
    for chunk in chunks:
        prose = _prose(chunk.text)
        candidates = [
            s
            for s in _sentences(prose)
            if MIN_SENTENCE_WORDS <= len(s.split()) <= MAX_SENTENCE_WORDS
        ]
        for sentence in rng.sample(candidates, min(per_chunk, len(candidates))):
            # the sentence may wrap over lines in the source: match its words, any spacing
            spaced = r"\s+".join(re.escape(word) for word in sentence.split())
            rest = re.sub(spaced, " ", chunk.text, count=1)
            if rest == chunk.text:
                continue
            if len(_WORD.findall(rest)) < MIN_PASSAGE_WORDS:
                continue
            yield TrainingPair(
                sentence, search_text(chunk.heading_path, rest), chunk.id, "sentence"
            )


def code_pairs(chunks: Iterable[PassageChunk]) -> Iterator[TrainingPair]:
    """The paragraph right before a fenced code block, as a query for the block."""
    for chunk in chunks:
        lines = chunk.text.split("\n")
        i = 0
        while i < len(lines):
            if not _FENCE.match(lines[i]):
                i += 1
                continue
            end = next((j for j in range(i + 1, len(lines)) if _FENCE.match(lines[j])), None)
            if end is None:
                break
            explanation = _paragraph_before(lines, i)
            code = "\n".join(lines[i : end + 1])
            if (
                end - i - 1 >= MIN_CODE_LINES
                and len(explanation.split()) >= MIN_SENTENCE_WORDS
                and not _HEADING_LINE.match(explanation)
            ):
                yield TrainingPair(explanation, code, chunk.id, "code")
            i = end + 1


def build_pairs(
    chunks: Sequence[PassageChunk], *, seed: int = 0, sentences_per_chunk: int = 2
) -> list[TrainingPair]:
    """Every kind of pair over the chunks, deduplicated on (query, chunk), in a seeded order."""
    rng = random.Random(seed)
    found = [
        *heading_pairs(chunks),
        *sentence_pairs(chunks, rng, sentences_per_chunk),
        *code_pairs(chunks),
    ]
    unique = list({(p.query, p.chunk_id): p for p in found}.values())
    rng.shuffle(unique)
    return unique


def mine_hard_negatives(
    pairs: Sequence[TrainingPair],
    search: Callable[[str, int], Sequence[int]],
    passages: dict[int, str],
    *,
    per_pair: int = 1,
    depth: int = 10,
) -> list[TrainingPair]:
    """Each pair with up to `per_pair` passages of the best BM25 hits (`search(query, depth)`
    gives chunk ids, best first) that are not its own chunk."""
    mined = []
    for pair in pairs:
        others = [i for i in search(pair.query, depth) if i != pair.chunk_id and i in passages]
        negatives = tuple(passages[i] for i in others[:per_pair])
        mined.append(TrainingPair(pair.query, pair.passage, pair.chunk_id, pair.kind, negatives))
    return mined


@dataclass(frozen=True)
class IndexView:
    """What pairs are made from: the index's chunks, their passages, and its BM25 search
    (`search(query, k)` gives chunk ids, best first)."""

    chunks: list[PassageChunk]
    passages: dict[int, str]
    search: Callable[[str, int], list[int]]

    def with_negatives(
        self, pairs: Sequence[TrainingPair], negatives: int, depth: int = 10
    ) -> list[TrainingPair]:
        return mine_hard_negatives(
            pairs, self.search, self.passages, per_pair=negatives, depth=depth
        )


@contextmanager
def index_view(db: Path) -> Iterator[IndexView]:
    store = IndexStore(db)
    try:
        chunks = [PassageChunk(r.id, r.heading_path, r.text) for r in store.file_chunks()]

        def search(query: str, k: int) -> list[int]:
            return [i for i, _, _ in store.search_bm25(query, k, snippets=False)]

        yield IndexView(chunks, {c.id: search_text(c.heading_path, c.text) for c in chunks}, search)
    finally:
        store.close()


def pairs_from_index(
    db: Path, *, seed: int = 0, negatives: int = 1, depth: int = 10
) -> list[TrainingPair]:
    """Every pair the index's chunks give, each with `negatives` BM25 hard negatives."""
    with index_view(db) as view:
        return view.with_negatives(build_pairs(view.chunks, seed=seed), negatives, depth)


def write_pairs(pairs: Iterable[TrainingPair], path: Path) -> int:
    """JSON lines, one pair each; written to a temporary name and renamed (never half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as out:
        for pair in pairs:
            out.write(json.dumps(asdict(pair), ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count


def read_pairs(path: Path) -> list[TrainingPair]:
    pairs = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            row["negatives"] = tuple(row.get("negatives", ()))
            pairs.append(TrainingPair(**row))
    return pairs


def _prose(text: str) -> str:
    """The chunk's text without code blocks, headings and table rows, lines joined."""
    kept, in_code = [], False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_code = not in_code
            continue
        if in_code or _HEADING_LINE.match(line) or line.lstrip().startswith("|"):
            continue
        kept.append(line.strip())
    return " ".join(part for part in kept if part)


def _sentences(prose: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(prose) if s.strip()]


def _paragraph_before(lines: Sequence[str], fence: int) -> str:
    """The non-blank lines just above line `fence`, joined."""
    end = fence
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    start = end
    while start > 0 and lines[start - 1].strip() and not _FENCE.match(lines[start - 1]):
        start -= 1
    return " ".join(line.strip() for line in lines[start:end])
