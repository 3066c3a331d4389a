"""Chunks cut to the embedder's token limit, so that no text goes unembedded.

A sentence-transformers model reads at most `max_seq_length` tokens and silently drops the
rest; a 2000-character chunk of code or a table easily holds more. When the embedder says how
many tokens it reads (`max_tokens`) and can count them (`token_count`), a chunk whose
embedded text (heading path + text, `search_text`) is over the limit is split at paragraph,
then line, then sentence, then word boundaries into pieces that each fit, measured with the
embedder's own tokenizer. Pieces carry no overlap and hold the chunk's text between them
(only the whitespace at their edges is dropped), with their own line numbers. A piece that
still does not fit (one "word" longer than the limit, a base64 line) is kept whole, embedded
truncated, and counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from neat.indexing.embedders import embedder_fingerprint
from neat.indexing.records import Chunk, search_text
from neat.interfaces import IEmbedder

__all__ = ["FitReport", "TokenLimit", "fit_chunks", "token_limit"]

TokenCounter = Callable[[Sequence[str]], list[int]]

# Boundaries, coarsest first: a blank line, a line end, a sentence end, any whitespace. A
# span is cut after each match, so the pieces keep every character but the whitespace.
_LEVELS = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n\s*"),
    re.compile(r"[.!?:][\"')\]*_`]*\s+"),
    re.compile(r"\s+"),
)

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class TokenLimit:
    """An embedder's token limit and the tokenizer that measures against it; `key` names
    both, for the chunker key (another embedder re-chunks)."""

    max_tokens: int
    count: TokenCounter
    key: str


@dataclass(slots=True)
class FitReport:
    """Chunks over the limit that were split, and pieces that still are (embedded truncated)."""

    split: int = 0
    truncated: int = 0


def token_limit(embedder: IEmbedder | None) -> TokenLimit | None:
    """The embedder's limit when it has the optional `max_tokens` and `token_count`; None
    otherwise (no embedder, or one that does not say), and then chunks are left as they are."""
    if embedder is None:
        return None
    limit = getattr(embedder, "max_tokens", None)
    count = getattr(embedder, "token_count", None)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1 or not callable(count):
        return None
    return TokenLimit(limit, count, f"tokens={limit}:{embedder_fingerprint(embedder)}")


def fit_chunks(chunks: Sequence[Chunk], limit: TokenLimit, report: FitReport) -> list[Chunk]:
    """`chunks` with each one over `limit` replaced by pieces that fit, in order; counts the
    split chunks and the pieces that cannot fit into `report`."""
    if not chunks:
        return []
    counts = limit.count([c.search_text for c in chunks])
    out: list[Chunk] = []
    for chunk, tokens in zip(chunks, counts, strict=True):
        if tokens <= limit.max_tokens:
            out.append(chunk)
            continue
        pieces = _Splitter(chunk, limit).pieces()
        if len(pieces) > 1:
            report.split += 1
        for (start, stop), fits in pieces:
            report.truncated += not fits
            out.append(_piece(chunk, start, stop))
    return out


def _piece(chunk: Chunk, start: int, stop: int) -> Chunk:
    """The part start..stop of the chunk's text, with the lines it spans."""
    text = chunk.text
    first = chunk.start_line + text.count("\n", 0, start)
    last = first + text.count("\n", start, stop)
    return replace(chunk, start_line=first, end_line=last, text=text[start:stop])


class _Splitter:
    """Splits one chunk's text: segments of the coarsest level that has more than one are
    packed greedily by their token counts; a segment over the budget goes one level finer.
    Packed pieces are then measured as embedded (with the heading path), and one that sums
    under but measures over (tokenizers are not additive at every boundary) is halved."""

    def __init__(self, chunk: Chunk, limit: TokenLimit) -> None:
        self.text = chunk.text
        self.heading = chunk.heading_path
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
