"""VectorIndex: exact top-k against brute force, for every backend that can be imported.

Property tests use small-integer vectors, so every inner product is exact in float32 whatever
the summation order: ties are real ties and the expected order (score, then lower id) is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neat.indexing.vectors import VectorIndex, faiss_available

BACKENDS = [
    "numpy",
    pytest.param(
        "faiss", marks=pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
    ),
]


def brute_force(store: dict[int, np.ndarray], query: np.ndarray, k: int) -> list[tuple[int, float]]:
    scored = [
        (i, float(np.dot(v.astype(np.float64), query.astype(np.float64)))) for i, v in store.items()
    ]
    scored.sort(key=lambda hit: (-hit[1], hit[0]))
    return scored[:k]


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_brute_force_on_random_unit_vectors(backend: str) -> None:
    rng = np.random.default_rng(0)
    dim, n = 24, 500
    ids = rng.permutation(10_000)[:n].astype(np.int64)
    vectors = unit_rows(rng, n, dim)
    index = VectorIndex(dim, backend=backend)  # type: ignore[arg-type]
    index.add(ids, vectors)
    queries = unit_rows(rng, 20, dim)
    store = dict(zip(ids.tolist(), vectors, strict=True))
    for hits, query in zip(index.search(queries, 10), queries, strict=True):
        expected = brute_force(store, query, 10)
        assert [i for i, _ in hits] == [i for i, _ in expected]
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in expected], atol=1e-5)
    assert index.search_one(queries[0], 10) == index.search(queries[:1], 10)[0]


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.integers(0, 40), unique=True, max_size=12)),
        st.tuples(st.just("remove"), st.lists(st.integers(0, 45), max_size=8)),
    ),
    max_size=12,
)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None)
@given(ops=_ops, seed=st.integers(0, 2**32 - 1), k=st.integers(0, 50))
def test_any_add_remove_sequence_searches_like_brute_force(
    backend: str, ops: list[tuple[str, list[int]]], seed: int, k: int
) -> None:
    rng = np.random.default_rng(seed)
    dim = 4
    index = VectorIndex(dim, backend=backend)  # type: ignore[arg-type]
    model: dict[int, np.ndarray] = {}
    for op, ids in ops:
        if op == "add":
            # Values in -2..2: many exact ties, which must come out lower id first.
            vectors = rng.integers(-2, 3, size=(len(ids), dim)).astype(np.float32)
            index.add(np.asarray(ids, dtype=np.int64), vectors)
            model.update(zip(ids, vectors, strict=True))
        else:
            removed = index.remove(ids)
            assert removed == len(set(ids) & model.keys())
            for i in ids:
                model.pop(i, None)
    assert len(index) == len(model)
    assert index.ids().tolist() == sorted(model)
    queries = rng.integers(-2, 3, size=(3, dim)).astype(np.float32)
    for hits, query in zip(index.search(queries, k), queries, strict=True):
        assert hits == brute_force(model, query, k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_re_adding_an_id_replaces_its_vector(backend: str) -> None:
    index = VectorIndex(2, backend=backend)  # type: ignore[arg-type]
    index.add([1, 2], np.array([[1, 0], [0, 1]], dtype=np.float32))
    index.add([1], np.array([[0, -1]], dtype=np.float32))
    assert len(index) == 2
    assert index.search_one(np.array([1, 0], dtype=np.float32), 5) == [(1, 0.0), (2, 0.0)]
    assert index.search_one(np.array([0, 1], dtype=np.float32), 1) == [(2, 1.0)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_remove_drops_ids_and_ignores_unknown_ones(backend: str) -> None:
    index = VectorIndex(2, backend=backend)  # type: ignore[arg-type]
    index.add(np.arange(5), np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 0]])
    assert index.remove([1, 3, 99, 1]) == 2
    assert index.remove([]) == 0
    assert index.ids().tolist() == [0, 2, 4]
    assert 1 not in index
    assert 2 in index
    assert "2" not in index
    hits = index.search_one(np.array([0, 1], dtype=np.float32), 10)
    assert [i for i, _ in hits] == [0, 2, 4]


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_ties_come_out_lower_id_first_even_at_the_cut(backend: str) -> None:
    index = VectorIndex(3, backend=backend)  # type: ignore[arg-type]
    same = np.tile(np.array([[0.6, 0.8, 0.0]], dtype=np.float32), (40, 1))
    index.add(np.arange(100, 60, -1), same)  # inserted in descending id order
    index.add([5], np.array([[0.0, 1.0, 0.0]], dtype=np.float32))
    hits = index.search_one(np.array([0, 1, 0], dtype=np.float32), 4)
    assert [i for i, _ in hits] == [5, 61, 62, 63]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_index_and_k_beyond_size(backend: str) -> None:
    index = VectorIndex(3, backend=backend)  # type: ignore[arg-type]
    query = np.array([1, 0, 0], dtype=np.float32)
    assert len(index) == 0
    assert index.ids().tolist() == []
    assert index.search_one(query, 5) == []
    assert index.search(np.zeros((2, 3), dtype=np.float32), 5) == [[], []]
    assert index.search(np.zeros((0, 3), dtype=np.float32), 5) == []
    index.add([7, 3], np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    assert index.search_one(query, 100) == [(7, 1.0), (3, 0.0)]
    assert index.search_one(query, 0) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_growth_shrink_and_clear(backend: str) -> None:
    rng = np.random.default_rng(1)
    index = VectorIndex(8, backend=backend)  # type: ignore[arg-type]
    vectors = unit_rows(rng, 1000, 8)
    index.add(np.arange(1000), vectors)
    index.remove(np.arange(0, 1000, 10) + 1)
    index.remove(np.arange(100, 1000))
    kept = [i for i in range(100) if i % 10 != 1]
    assert index.ids().tolist() == kept
    store = {i: vectors[i] for i in kept}
    query = vectors[42]
    assert [i for i, _ in index.search_one(query, 7)] == [
        i for i, _ in brute_force(store, query, 7)
    ]
    index.clear()
    assert len(index) == 0
    index.add([1], vectors[:1])
    assert index.ids().tolist() == [1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_are_validated(backend: str) -> None:
    index = VectorIndex(3, backend=backend)  # type: ignore[arg-type]
    row = np.zeros((1, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        index.add([1], np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"reshape"):
        index.add([1], np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="search_one"):
        index.search(np.zeros(3, dtype=np.float32), 1)
    with pytest.raises(ValueError, match="numeric"):
        index.add([1], np.array([["a", "b", "c"]]))
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        index.add([1, 2], row)
    with pytest.raises(ValueError, match="repeat"):
        index.add([1, 1], np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        index.add([-1], row)
    with pytest.raises(ValueError, match="integers"):
        index.add(np.array([1.5]), row)
    with pytest.raises(ValueError, match="NaN"):
        index.add([1], np.full((1, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(3,\) vector"):
        index.search_one(row, 1)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        index.search(np.zeros((1, 2), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="k must be"):
        index.search(row, -1)
    assert len(index) == 0


def test_dim_and_backend_are_validated() -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="dim"):
            VectorIndex(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend"):
        VectorIndex(3, backend="annoy")  # type: ignore[arg-type]


def test_auto_backend_follows_faiss_availability() -> None:
    index = VectorIndex(3)
    assert index.backend == ("faiss" if faiss_available() else "numpy")
    assert "VectorIndex(dim=3" in repr(index)


@pytest.mark.skipif(faiss_available(), reason="faiss is installed")
def test_asking_for_faiss_without_it_says_how_to_install() -> None:
    with pytest.raises(ImportError, match="faiss-cpu"):
        VectorIndex(3, backend="faiss")


def test_float64_and_integer_input_is_accepted_as_float32() -> None:
    index = VectorIndex(2, backend="numpy")
    index.add(np.array([4], dtype=np.int32), np.array([[1.0, 0.0]], dtype=np.float64))
    hits = index.search_one(np.array([2, 0]), 1)
    assert hits == [(4, 2.0)]
    assert isinstance(hits[0][0], int)
    assert isinstance(hits[0][1], float)
