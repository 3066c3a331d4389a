"""Reciprocal rank fusion: merge ranked lists (BM25, dense) without comparing their scores."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["DEFAULT_RRF_K", "reciprocal_rank_fusion"]

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
