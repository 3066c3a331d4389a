"""Retrieval metrics for the index benchmark, with binary relevance.

Definitions follow trec_eval / pytrec_eval as BEIR (Thakur et al., 2021) uses them:
Recall@k = |relevant ∩ top-k| / |relevant|; MRR@k = 1 / rank of the first relevant hit in the
top k, else 0; nDCG@k = DCG@k / IDCG@k with DCG = Σ_i rel_i / log2(i + 1), ranks i from 1, and
IDCG putting min(|relevant|, k) relevant docs at the top. A doc listed twice in one ranking
counts at its first position only; a query with no relevant docs scores 0 (trec_eval's value).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TypeVar

__all__ = ["evaluate_run", "mrr_at_k", "ndcg_at_k", "recall_at_k"]

DocId = TypeVar("DocId", bound=Hashable)


def recall_at_k(ranked: Sequence[DocId], relevant: AbstractSet[DocId], k: int) -> float:
    """Share of the relevant docs found in the top `k`."""
    _check_k(k)
    if not relevant:
        return 0.0
    found = sum(1 for _, doc in _top_unique(ranked, k) if doc in relevant)
    return found / len(relevant)


def mrr_at_k(ranked: Sequence[DocId], relevant: AbstractSet[DocId], k: int) -> float:
    """Reciprocal rank of the first relevant doc in the top `k` (0 when none is)."""
    _check_k(k)
    for rank, doc in _top_unique(ranked, k):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[DocId], relevant: AbstractSet[DocId], k: int) -> float:
    """Normalised discounted cumulative gain at `k`, binary gains."""
    _check_k(k)
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, doc in _top_unique(ranked, k) if doc in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def evaluate_run(
    run: Mapping[str, Sequence[DocId]],
    qrels: Mapping[str, AbstractSet[DocId]],
    k: int = 10,
) -> dict[str, float]:
    """Mean `recall@k`, `mrr@k` and `ndcg@k` over the queries, plus `queries` (their count).

    The queries are those of `qrels` with at least one relevant doc (others are skipped: no
    metric is defined for them). A query missing from `run` counts as an empty ranking, so a
    retriever is not rewarded for answering nothing; queries only in `run` are ignored.
    """
    _check_k(k)
    judged = [query for query, relevant in qrels.items() if relevant]
    if not judged:
        raise ValueError("no query in qrels has a relevant document")
    totals = {"recall": 0.0, "mrr": 0.0, "ndcg": 0.0}
    for query in judged:
        ranked = run.get(query, ())
        relevant = qrels[query]
        totals["recall"] += recall_at_k(ranked, relevant, k)
        totals["mrr"] += mrr_at_k(ranked, relevant, k)
        totals["ndcg"] += ndcg_at_k(ranked, relevant, k)
    count = len(judged)
    result = {f"{name}@{k}": total / count for name, total in totals.items()}
    result["queries"] = float(count)
    return result


def _top_unique(ranked: Sequence[DocId], k: int) -> Iterator[tuple[int, DocId]]:
    """(rank, doc) for the first `k` positions, later repeats of a doc yielding nothing."""
    seen: set[DocId] = set()
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc not in seen:
            seen.add(doc)
            yield rank, doc


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
