"""Reciprocal rank fusion, convex fusion and the retrieval metrics, against values worked out
by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neat.indexing.fusion import convex_fusion, reciprocal_rank_fusion
from neat.indexing.metrics import evaluate_run, mrr_at_k, ndcg_at_k, recall_at_k

# ---------------------------------------------------------------- reciprocal rank fusion


def test_rrf_hand_computed() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]])
    assert [doc for doc, _ in fused] == [1, 3, 2]
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[2] == pytest.approx(1 / 62)


def test_rrf_a_doc_in_one_list_only_gets_that_lists_share() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["c"]], k=10))
    assert fused == pytest.approx({"a": 1 / 11, "c": 1 / 11, "b": 1 / 12})


def test_rrf_weights_shift_the_order() -> None:
    plain = reciprocal_rank_fusion([[1, 2], [2, 1]])
    assert plain[0][1] == pytest.approx(plain[1][1])  # a tie without weights
    weighted = reciprocal_rank_fusion([[1, 2], [2, 1]], weights=[2.0, 1.0])
    assert [doc for doc, _ in weighted] == [1, 2]
    assert dict(weighted)[1] == pytest.approx(2 / 61 + 1 / 62)
    assert dict(weighted)[2] == pytest.approx(2 / 62 + 1 / 61)
    assert dict(reciprocal_rank_fusion([[1], [2]], weights=[0.0, 1.0])) == {2: 1 / 61, 1: 0.0}


def test_rrf_ties_keep_first_appearance_rank_by_rank() -> None:
    fused = reciprocal_rank_fusion([[5, 1], [2, 9]])
    assert [doc for doc, _ in fused] == [5, 2, 1, 9]
    assert [doc for doc, _ in reciprocal_rank_fusion([[9], [1]])] == [9, 1]


def test_rrf_counts_a_repeated_doc_once_per_list_at_its_best_rank() -> None:
    assert dict(reciprocal_rank_fusion([[1, 2, 1]])) == pytest.approx({1: 1 / 61, 2: 1 / 62})


def test_rrf_k_zero_and_empty_input() -> None:
    assert dict(reciprocal_rank_fusion([[1, 2]], k=0)) == {1: 1.0, 2: 0.5}
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


def test_rrf_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2 weights for 1 rankings"):
        reciprocal_rank_fusion([[1]], weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion([[1]], k=-1)
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([[1]], weights=[-1.0])
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([[1]], weights=[math.nan])


@settings(max_examples=100, deadline=None)
@given(
    rankings=st.lists(
        st.lists(st.integers(0, 30), unique=True, max_size=15), min_size=1, max_size=4
    )
)
def test_rrf_is_sorted_complete_and_deterministic(
    rankings: list[list[int]],
) -> None:
    fused = reciprocal_rank_fusion(rankings)
    assert {doc for doc, _ in fused} == {doc for ranking in rankings for doc in ranking}
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True)
    assert fused == reciprocal_rank_fusion([list(r) for r in rankings])


# ---------------------------------------------------------------- convex fusion

LEXICAL = [("a", 10.0), ("b", 8.0), ("c", 2.0)]
DENSE = [("c", 0.9), ("d", 0.5), ("a", 0.1)]


def test_convex_hand_computed_with_floors_for_missing_docs() -> None:
    fused = convex_fusion(LEXICAL, DENSE, 0.5)
    scores = dict(fused)
    assert scores["a"] == pytest.approx(0.5 * 1.0 + 0.5 * 1.1 / 2)
    assert scores["b"] == pytest.approx(0.5 * 0.8 + 0.5 * 1.1 / 2)  # dense floor: 0.1
    assert scores["c"] == pytest.approx(0.5 * 0.2 + 0.5 * 1.9 / 2)
    assert scores["d"] == pytest.approx(0.5 * 0.2 + 0.5 * 1.5 / 2)  # bm25 floor: 2/10
    assert [doc for doc, _ in fused] == ["a", "b", "c", "d"]


def test_convex_weight_zero_keeps_bm25_order_and_one_the_dense_order() -> None:
    assert [d for d, _ in convex_fusion(LEXICAL, DENSE, 0.0)][:3] == ["a", "b", "c"]
    assert [d for d, _ in convex_fusion(LEXICAL, DENSE, 1.0)][:2] == ["c", "d"]


def test_convex_keeps_how_sure_bm25_was_where_rrf_sees_a_tie() -> None:
    lexical = [("top", 30.0), ("second", 5.0)]
    dense = [("second", 0.31), ("top", 0.30)]  # the embedder barely prefers "second"
    fused = dict(convex_fusion(lexical, dense, 0.5))
    assert fused["top"] > fused["second"] + 0.3
    # ranks alone: the two are even, however sure BM25 was
    ranks = dict(reciprocal_rank_fusion([["top", "second"], ["second", "top"]]))
    assert ranks["top"] == pytest.approx(ranks["second"])


def test_convex_ties_empty_lists_and_bad_weights() -> None:
    assert convex_fusion([], [], 0.3) == []
    assert [d for d, _ in convex_fusion([], [("x", 0.2), ("y", 0.2)], 0.3)] == ["x", "y"]
    assert dict(convex_fusion([("x", 0.0)], [], 0.3)) == {"x": pytest.approx(0.0)}
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="dense_weight"):
            convex_fusion(LEXICAL, DENSE, bad)


# ---------------------------------------------------------------- metrics


def test_ndcg_two_relevant_at_ranks_one_and_three() -> None:
    ranked = ["a", "x", "b", "y"]
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, {"a", "b"}, 10) == pytest.approx(expected)


def test_ndcg_ideal_uses_at_most_k_relevant() -> None:
    relevant = {"a", "b", "c", "d", "e"}
    assert ndcg_at_k(["a", "b", "c"], relevant, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], relevant, 1) == 0.0
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(["x", "a"], relevant, 2) == pytest.approx((1 / math.log2(3)) / ideal)


def test_recall_at_k() -> None:
    relevant = {"a", "b", "c", "d"}
    assert recall_at_k(["a", "x", "b", "c"], relevant, 3) == pytest.approx(2 / 4)
    assert recall_at_k(["a", "x", "b", "c"], relevant, 10) == pytest.approx(3 / 4)
    assert recall_at_k([], relevant, 10) == 0.0


def test_mrr_at_k() -> None:
    assert mrr_at_k(["x", "y", "a"], {"a"}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "a"], {"a"}, 2) == 0.0
    assert mrr_at_k(["a", "b"], {"a", "b"}, 10) == 1.0


def test_no_relevant_docs_score_zero_and_repeats_count_once() -> None:
    for metric in (recall_at_k, mrr_at_k, ndcg_at_k):
        assert metric(["a"], set(), 10) == 0.0
    assert recall_at_k(["a", "a", "a"], {"a", "b"}, 10) == pytest.approx(0.5)
    assert ndcg_at_k(["a", "a"], {"a", "b"}, 10) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_metrics_reject_bad_k() -> None:
    for metric in (recall_at_k, mrr_at_k, ndcg_at_k):
        with pytest.raises(ValueError, match="k must be"):
            metric(["a"], {"a"}, 0)


def test_evaluate_run_averages_over_judged_queries() -> None:
    run = {
        "q1": ["a", "x", "b"],  # relevant at 1 and 3 of {a, b}
        "q2": ["y", "c"],  # relevant at 2 of {c}
        "q4": ["a"],  # not in qrels: ignored
    }
    qrels = {"q1": {"a", "b"}, "q2": {"c"}, "q3": {"d"}, "q5": set[str]()}
    result = evaluate_run(run, qrels, k=2)
    # q3 has no ranking (counts as 0); q5 has no relevant docs (skipped).
    assert result["queries"] == 3
    assert result["recall@2"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert result["mrr@2"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    ndcg_q1 = 1 / (1 + 1 / math.log2(3))
    ndcg_q2 = (1 / math.log2(3)) / 1
    assert result["ndcg@2"] == pytest.approx((ndcg_q1 + ndcg_q2 + 0) / 3)
    assert set(result) == {"recall@2", "mrr@2", "ndcg@2", "queries"}


def test_evaluate_run_needs_a_judged_query() -> None:
    with pytest.raises(ValueError, match="no query"):
        evaluate_run({"q": ["a"]}, {"q": set()})


@settings(max_examples=100, deadline=None)
@given(
    ranked=st.lists(st.integers(0, 20), max_size=25),
    relevant=st.sets(st.integers(0, 20), min_size=1, max_size=8),
    k=st.integers(1, 15),
)
def test_metrics_stay_in_range_and_perfect_rankings_score_one(
    ranked: list[int], relevant: set[int], k: int
) -> None:
    for metric in (recall_at_k, mrr_at_k, ndcg_at_k):
        assert 0.0 <= metric(ranked, relevant, k) <= 1.0 + 1e-12
    perfect = sorted(relevant)
    assert ndcg_at_k(perfect, relevant, k) == pytest.approx(1.0)
    assert mrr_at_k(perfect, relevant, k) == 1.0
    assert recall_at_k(perfect, relevant, k) == pytest.approx(min(len(relevant), k) / len(relevant))
