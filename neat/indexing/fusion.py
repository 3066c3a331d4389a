"""Merging BM25's and the embedder's rankings: reciprocal rank fusion (ranks only) or a
convex combination of normalised scores."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["DEFAULT_RRF_K", "convex_fusion", "reciprocal_rank_fusion"]

DocId = TypeVar("DocId", bound=Hashable)

DEFAULT_RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[DocId]],
    k: int = DEFAULT_RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[DocId, float]]:
    """Fuse rankings (each best first) into `(doc, score)` pairs, best first.

    score(d) = Σ_r w_r / (k + rank_r(d)), ranks from 1, summed over the lists that hold d
    (Cormack, Clarke & Büttcher, "Reciprocal rank fusion outperforms Condorcet and individual
    rank learning methods", SIGIR 2009, doi:10.1145/1571941.1572114; k = 60 there). Weights
    default to 1; down-weight a weak leg (plain RRF with a weak dense leg can do worse than
    BM25 alone). A doc repeated within one list counts
    at its best rank only. Equal scores keep the order of first appearance, reading the lists
    rank by rank (all rank-1 entries in list order, then all rank-2 entries, ...), so the
    result never depends on hashing.
    """
    # Ranks start at 1, so k = 0 is still well defined (score = w / rank).
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    if weights is None:
        weights = [1.0] * len(rankings)
    elif len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    for weight in weights:
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weights must be finite and non-negative, got {weight!r}")

    scores: dict[DocId, float] = {}
    first_seen: dict[DocId, tuple[int, int]] = {}
    for list_index, (ranking, weight) in enumerate(zip(rankings, weights, strict=True)):
        seen_here: set[DocId] = set()
        for rank, doc in enumerate(ranking, start=1):
            if doc in seen_here:
                continue
            seen_here.add(doc)
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
            position = (rank, list_index)
            if doc not in first_seen or position < first_seen[doc]:
                first_seen[doc] = position
    ordered = sorted(scores, key=lambda doc: (-scores[doc], first_seen[doc]))
    return [(doc, scores[doc]) for doc in ordered]


def convex_fusion(
    lexical: Sequence[tuple[DocId, float]],
    dense: Sequence[tuple[DocId, float]],
    dense_weight: float,
) -> list[tuple[DocId, float]]:
    """Fuse BM25 hits (score >= 0) and dense hits (cosine in [-1, 1]), each best first, into
    `(doc, score)` pairs, best first:

    score(d) = (1 - w) * bm25(d) / max bm25 + w * (cos(d) + 1) / 2

    Bruch, Gai & Ingber, "An Analysis of Fusion Functions for Hybrid Retrieval" (ACM TOIS
    2023): a convex combination of scores normalised by their theoretical minimum (0 for
    BM25, -1 for a cosine) beats RRF once `w` is set, because it keeps how confident each
    ranker is; RRF weighs BM25's first and fifth hit nearly alike, so a weak dense ranker
    reorders BM25's best hits at any weight. A doc missing from one list takes that list's
    lowest score (an upper bound of its real one). Equal scores keep first appearance, rank
    by rank, BM25's list first.
    """
    if not math.isfinite(dense_weight) or not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense_weight must be in [0, 1], got {dense_weight!r}")
    lex = {doc: score for doc, score in reversed(lexical)}  # a repeated doc: its best score
    cos = {doc: score for doc, score in reversed(dense)}
    top = max(max(lex.values(), default=0.0), 0.0)
    lex_floor = min(lex.values(), default=0.0)
    cos_floor = min(cos.values(), default=-1.0)
    order: dict[DocId, None] = {}
    for pair in _interleave([d for d, _ in lexical], [d for d, _ in dense]):
        order.setdefault(pair, None)
    scores = {
        doc: (1.0 - dense_weight) * (lex.get(doc, lex_floor) / top if top > 0 else 0.0)
        + dense_weight * (cos.get(doc, cos_floor) + 1.0) / 2.0
        for doc in order
    }
    first = {doc: i for i, doc in enumerate(order)}
    return sorted(scores.items(), key=lambda item: (-item[1], first[item[0]]))


def _interleave(a: Sequence[DocId], b: Sequence[DocId]) -> list[DocId]:
    out: list[DocId] = []
    for i in range(max(len(a), len(b))):
        out.extend(x[i] for x in (a, b) if i < len(x))
    return out
