"""Long chunks embedded whole: in pieces that fit the embedder's token limit, pooled.

A sentence-transformers model reads at most `max_seq_length` tokens and silently drops the
rest; a 2000-character chunk of code or a table easily holds more. When the embedder says how
many tokens it reads (`max_tokens`) and can count them (`token_count`), a chunk whose
embedded text (heading path + text, `search_text`) is over the limit is split at paragraph,
then line, then sentence, then word boundaries into pieces that each fit, measured with the
embedder's own tokenizer; each piece is embedded with the chunk's heading path, and the
chunk's vector is the normalised mean of its pieces' vectors. The pieces hold all of the
chunk's text between them (only whitespace at their edges is dropped). A piece that still
does not fit (one "word" longer than the limit, a base64 line) is embedded truncated and
counted.

The chunks themselves stay as the chunker made them. Splitting them into stored pieces
instead cost BM25 nDCG@10 0.025 on the Rust book benchmark and 0.029 on pydoc topics (smaller
chunks hold fewer of a query's words), and BM25 is one leg of hybrid search; averaging piece
vectors is the AvgP document embedding of Dai & Callan 2019 ("Deeper Text Understanding for
IR with Contextual Neural Language Modeling", SIGIR).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from neat.indexing.records import search_text
from neat.interfaces import IEmbedder

__all__ = ["FitReport", "TokenLimit", "embed_whole", "embedding_pieces", "token_limit"]

TokenCounter = Callable[[Sequence[str]], list[int]]
Embed = Callable[[Sequence[str]], np.ndarray]

# Boundaries, coarsest first: a blank line, a line end, a sentence end, any whitespace. A
# span is cut after each match, so the pieces keep every character but the whitespace.
_LEVELS = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n\s*"),
    re.compile(r"[.!?:][\"')\]*_`]*\s+"),
    re.compile(r"\s+"),
)

Span = tuple[int, int]
Passage = tuple[tuple[str, ...], str]  # (heading path, text) of a chunk


@dataclass(frozen=True, slots=True)
class TokenLimit:
    """An embedder's token limit and the tokenizer that measures against it."""

    max_tokens: int
    count: TokenCounter


@dataclass(slots=True)
class FitReport:
    """Chunks over the limit embedded in pieces, and pieces still over it (embedded truncated)."""

    split: int = 0
    truncated: int = 0


def token_limit(embedder: IEmbedder | None) -> TokenLimit | None:
    """The embedder's limit when it has the optional `max_tokens` and `token_count`; None
    otherwise (no embedder, or one that does not say), and then texts are embedded as they are."""
    if embedder is None:
        return None
    limit = getattr(embedder, "max_tokens", None)
    count = getattr(embedder, "token_count", None)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1 or not callable(count):
        return None
    return TokenLimit(limit, count)


def embedding_pieces(
    passages: Sequence[Passage], limit: TokenLimit | None, report: FitReport
) -> list[list[str]]:
    """The texts to embed for each passage: its `search_text` when it fits (or there is no
    limit), else one per piece, each with the heading path; counts into `report`."""
    whole = [search_text(heading, text) for heading, text in passages]
    if limit is None or not whole:
        return [[text] for text in whole]
    out: list[list[str]] = []
    for (heading, text), full, tokens in zip(passages, whole, limit.count(whole), strict=True):
        if tokens <= limit.max_tokens:
            out.append([full])
            continue
        pieces = _Splitter(heading, text, limit).pieces()
        if not pieces:
            out.append([full])
            continue
        report.split += len(pieces) > 1
        report.truncated += sum(not fits for _, fits in pieces)
        out.append([search_text(heading, text[a:b]) for (a, b), _ in pieces])
    return out


def embed_whole(pieces: Sequence[Sequence[str]], embed: Embed, dim: int) -> np.ndarray:
    """(len(pieces), dim) float32: each passage's vector, the normalised mean of its pieces'."""
    flat = [text for texts in pieces for text in texts]
    vectors = np.asarray(embed(flat), dtype=np.float32) if flat else np.zeros((0, dim))
    if vectors.shape != (len(flat), dim):
        raise ValueError(
            f"embedder returned shape {vectors.shape} for {len(flat)} texts, expected "
            f"({len(flat)}, {dim})"
        )
    out = np.empty((len(pieces), dim), dtype=np.float32)
    start = 0
    for i, texts in enumerate(pieces):
        part = vectors[start : start + len(texts)]
        start += len(texts)
        if len(part) == 1:
            out[i] = part[0]
            continue
        mean = part.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        out[i] = mean / norm if norm > 0 else mean
    return out


class _Splitter:
    """Splits one passage's text: segments of the coarsest level that has more than one are
    packed greedily by their token counts; a segment over the budget goes one level finer.
    Packed pieces are then measured as embedded (with the heading path), and one that sums
    under but measures over (tokenizers are not additive at every boundary) is halved."""

    def __init__(self, heading: tuple[str, ...], text: str, limit: TokenLimit) -> None:
        self.text = text
        self.heading = heading
        self.limit = limit
        prefix = search_text(self.heading, "")
        overhead = limit.count([prefix])[0] if prefix else 0
        # Pieces fit beside the heading path while that leaves an eighth of the limit; past
        # that nothing useful fits, and pieces of half the limit (counted as truncated) beat
        # one-word ones.
        room = limit.max_tokens - overhead
        self.budget = (
            room if room >= max(limit.max_tokens // 8, 1) else max(limit.max_tokens // 2, 1)
        )

    def pieces(self) -> list[tuple[Span, bool]]:
        """(span, fits) for each piece, in order."""
        whole = _trim(self.text, 0, len(self.text))
        if whole[0] >= whole[1]:
            return []
        return self._verify(self._pack(whole[0], whole[1], 0))

    def _segments(self, start: int, stop: int, level: int) -> list[Span]:
        """start..stop cut after each boundary of `level`, trimmed, empty ones dropped."""
        spans: list[Span] = []
        pos = start
        for match in _LEVELS[level].finditer(self.text, start, stop):
            spans.append(_trim(self.text, pos, match.end()))
            pos = match.end()
        spans.append(_trim(self.text, pos, stop))
        return [(a, b) for a, b in spans if a < b]

    def _pack(self, start: int, stop: int, level: int) -> list[Span]:
        while True:
            segments = self._segments(start, stop, level)
            if len(segments) > 1 or level == len(_LEVELS) - 1:
                break
            level += 1
        if len(segments) <= 1:
            return segments  # one unbreakable word
        counts = self.limit.count([self.text[a:b] for a, b in segments])
        out: list[Span] = []
        current: Span | None = None
        total = 0
        for (a, b), tokens in zip(segments, counts, strict=True):
            if tokens > self.budget:
                if current is not None:
                    out.append(current)
                    current, total = None, 0
                out.extend(self._pack(a, b, level + 1) if level + 1 < len(_LEVELS) else [(a, b)])
                continue
            if current is not None and total + tokens > self.budget:
                out.append(current)
                current, total = None, 0
            current = (a, b) if current is None else (current[0], b)
            total += tokens
        if current is not None:
            out.append(current)
        return out

    def _verify(self, spans: list[Span]) -> list[tuple[Span, bool]]:
        if not spans:
            return []
        counts = self.limit.count([search_text(self.heading, self.text[a:b]) for a, b in spans])
        out: list[tuple[Span, bool]] = []
        for span, tokens in zip(spans, counts, strict=True):
            if tokens <= self.limit.max_tokens:
                out.append((span, True))
                continue
            halves = self._halve(*span)
            if halves is None:
                out.append((span, False))
            else:
                out.extend(self._verify(halves))
        return out

    def _halve(self, start: int, stop: int) -> list[Span] | None:
        """start..stop in two at the middle boundary of the coarsest level that has one."""
        for level in range(len(_LEVELS)):
            segments = self._segments(start, stop, level)
            if len(segments) > 1:
                middle = len(segments) // 2
                return [(start, segments[middle - 1][1]), (segments[middle][0], stop)]
        return None


def _trim(text: str, start: int, stop: int) -> Span:
    while start < stop and text[start].isspace():
        start += 1
    while stop > start and text[stop - 1].isspace():
        stop -= 1
    return start, stop
