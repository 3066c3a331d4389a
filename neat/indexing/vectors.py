"""Exact inner-product search over unit vectors keyed by int ids (the dense leg's RAM index).

SQLite holds the vectors durably; this index is a cache rebuilt from it on start, so it
has no persistence of its own. Two backends give the
same answers: NumPy (always there) and faiss-cpu when installed
(`faiss.IndexIDMap2(faiss.IndexFlatIP)`, which keeps ids stable under `remove_ids`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from typing import Any, Literal, Protocol

import numpy as np

__all__ = ["Backend", "VectorIndex", "faiss_available"]

Backend = Literal["auto", "numpy", "faiss"]
Hit = tuple[int, float]


def faiss_available() -> bool:
    """Whether `faiss` can be imported (what `backend="auto"` picks)."""
    return importlib.util.find_spec("faiss") is not None


class VectorIndex:
    """Exact top-k by inner product (cosine for unit vectors) over vectors keyed by int ids.

    - `add(ids, vectors)`: re-adding an id replaces its vector; ids must be non-negative (faiss
      reserves -1) and unique within one call.
    - `remove(ids)`: unknown ids are ignored; returns how many were removed.
    - `search(queries, k)` takes a (q, dim) array and returns one hit list per query;
      `search_one(query, k)` takes a (dim,) vector and returns one hit list. A hit list holds
      `(id, score)` pairs, best first, ties by lower id, at most `k` (all when k > len).

    Vectors are not normalised here: the caller passes unit rows (as `IEmbedder` gives).
    `backend="auto"` uses faiss-cpu when installed, else NumPy; both give the same ids.
    """

    def __init__(self, dim: int, backend: Backend = "auto") -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if backend not in ("auto", "numpy", "faiss"):
            raise ValueError(f"backend must be 'auto', 'numpy' or 'faiss', got {backend!r}")
        self._dim = int(dim)
        use_faiss = backend == "faiss" or (backend == "auto" and faiss_available())
        if backend == "faiss" and not faiss_available():
            raise ImportError("backend='faiss' needs faiss-cpu: pip install faiss-cpu")
        self._store: _Store = _FaissStore(self._dim) if use_faiss else _NumpyStore(self._dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def backend(self) -> Literal["numpy", "faiss"]:
        """The backend actually in use."""
        return self._store.name

    def __len__(self) -> int:
        return self._store.size()

    def __contains__(self, item: object) -> bool:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            return False
        return self._store.contains(int(item))

    def ids(self) -> np.ndarray:
        """The stored ids, sorted ascending (int64)."""
        return np.sort(self._store.ids())

    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace: after the call each id maps to its row of `vectors`."""
        id_array = _as_ids(ids)
        matrix = self._as_matrix(vectors, "vectors")
        if len(id_array) != len(matrix):
            raise ValueError(f"{len(id_array)} ids for {len(matrix)} vectors")
        if len(id_array) == 0:
            return
        if len(np.unique(id_array)) != len(id_array):
            raise ValueError("ids repeat within one add call")
        if (id_array < 0).any():
            raise ValueError("ids must be non-negative")
        self._store.add(id_array, matrix)

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Drop these ids; returns how many were present."""
        id_array = np.unique(_as_ids(ids))
        if len(id_array) == 0:
            return 0
        return self._store.remove(id_array)

    def clear(self) -> None:
        """Drop everything (before a rebuild from the database)."""
        self._store.clear()

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Top `k` per query row of a (q, dim) array."""
        matrix = self._as_matrix(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise ValueError(f"k must be a non-negative int, got {k!r}")
        size = len(self)
        if len(matrix) == 0:
            return []
        if k == 0 or size == 0:
            return [[] for _ in range(len(matrix))]
        return self._store.search(matrix, min(int(k), size))

    def search_one(self, query: np.ndarray, k: int) -> list[Hit]:
        """Top `k` for one (dim,) query vector."""
        vector = np.asarray(query)
        if vector.ndim != 1:
            raise ValueError(
                f"search_one takes a ({self._dim},) vector, got shape {vector.shape}; "
                "use search for a batch"
            )
        return self.search(vector[None, :], k)[0]

    def _as_matrix(self, array: np.ndarray, what: str) -> np.ndarray:
        matrix = np.asarray(array)
        if matrix.ndim != 2 or matrix.shape[1] != self._dim:
            hint = ""
            if matrix.ndim == 1:
                hint = (
                    "; use search_one for a single query"
                    if what == "queries"
                    else "; reshape a single vector to (1, dim)"
                )
            raise ValueError(f"{what} must have shape (n, {self._dim}), got {matrix.shape}{hint}")
        if not (
            np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)
        ):
            raise ValueError(f"{what} must be numeric, got dtype {matrix.dtype}")
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if not np.isfinite(matrix).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        return matrix

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self._dim}, backend={self.backend!r}, size={len(self)})"


def _as_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {array.shape}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> list[Hit]:
    """Best `k` of one score row, ties by lower id: every candidate scoring at least the k-th
    best is sorted, so a tie at the cut cannot make the answer depend on storage order."""
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((ids[candidates], -scores[candidates]))[:k]
    best = candidates[order]
    return [(int(i), float(s)) for i, s in zip(ids[best], scores[best], strict=True)]


class _Store(Protocol):
    name: Literal["numpy", "faiss"]

    def size(self) -> int: ...

    def contains(self, item: int) -> bool: ...

    def ids(self) -> np.ndarray: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def clear(self) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]: ...


class _NumpyStore:
    """Rows packed at the front of a growing float32 matrix; removal moves the last rows into
    the holes, so add and remove stay amortised O(rows touched) and search is one matmul."""

    name: Literal["numpy", "faiss"] = "numpy"

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._row: dict[int, int] = {}
        self._size = 0

    def size(self) -> int:
        return self._size

    def contains(self, item: int) -> bool:
        return item in self._row

    def ids(self) -> np.ndarray:
        return self._ids[: self._size].copy()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        rows = np.fromiter((self._row.get(int(i), -1) for i in ids), dtype=np.int64, count=len(ids))
        known = rows >= 0
        self._vectors[rows[known]] = vectors[known]
        new_ids, new_vectors = ids[~known], vectors[~known]
        if len(new_ids) == 0:
            return
        start, end = self._size, self._size + len(new_ids)
        self._reserve(end)
        self._vectors[start:end] = new_vectors
        self._ids[start:end] = new_ids
        self._row.update(zip(new_ids.tolist(), range(start, end), strict=True))
        self._size = end

    def remove(self, ids: np.ndarray) -> int:
        removed = 0
        for item in ids.tolist():
            row = self._row.pop(item, None)
            if row is None:
                continue
            last = self._size - 1
            if row != last:
                moved = int(self._ids[last])
                self._vectors[row] = self._vectors[last]
                self._ids[row] = moved
                self._row[moved] = row
            self._size = last
            removed += 1
        if self._size < len(self._ids) // 4:
            self._shrink()
        return removed

    def clear(self) -> None:
        self._vectors = np.zeros((0, self._dim), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._row.clear()
        self._size = 0

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        ids = self._ids[: self._size]
        scores = queries @ self._vectors[: self._size].T  # (q, n)
        return [_top_k(row, ids, k) for row in scores]

    def _reserve(self, needed: int) -> None:
        if needed <= len(self._ids):
            return
        capacity = max(needed, 2 * len(self._ids), 16)
        vectors = np.zeros((capacity, self._dim), dtype=np.float32)
        vectors[: self._size] = self._vectors[: self._size]
        ids = np.zeros(capacity, dtype=np.int64)
        ids[: self._size] = self._ids[: self._size]
        self._vectors, self._ids = vectors, ids

    def _shrink(self) -> None:
        capacity = max(2 * self._size, 16)
        if capacity >= len(self._ids):
            return
        self._vectors = self._vectors[:capacity].copy()
        self._ids = self._ids[:capacity].copy()


class _FaissStore:
    """`IndexIDMap2(IndexFlatIP)`: exact search, `remove_ids` keeps the other ids valid
    (faiss wiki, "Special operations on indexes"). faiss breaks ties in its own order, so a
    search fetches past the k-th score's ties and re-sorts them as the NumPy store does."""

    name: Literal["numpy", "faiss"] = "faiss"

    def __init__(self, dim: int) -> None:
        self._faiss: Any = importlib.import_module("faiss")
        self._dim = dim
        self._index: Any = self._faiss.IndexIDMap2(self._faiss.IndexFlatIP(dim))
        self._present: set[int] = set()

    def size(self) -> int:
        return int(self._index.ntotal)

    def contains(self, item: int) -> bool:
        return item in self._present

    def ids(self) -> np.ndarray:
        return np.asarray(self._faiss.vector_to_array(self._index.id_map), dtype=np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        known = np.fromiter((int(i) in self._present for i in ids), dtype=bool, count=len(ids))
        if known.any():
            self._index.remove_ids(np.ascontiguousarray(ids[known], dtype=np.int64))
        self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        self._present.update(ids.tolist())

    def remove(self, ids: np.ndarray) -> int:
        present = [i for i in ids.tolist() if i in self._present]
        if not present:
            return 0
        removed = int(self._index.remove_ids(np.asarray(present, dtype=np.int64)))
        self._present.difference_update(present)
        return removed

    def clear(self) -> None:
        self._index.reset()
        self._present.clear()

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        size = self.size()
        fetch = min(size, k + 16)
        while True:
            scores, labels = self._index.search(queries, fetch)
            # A row is settled when it holds everything, or its last fetched score is below
            # its k-th: then no unfetched item can tie with the k-th.
            if fetch == size or bool((scores[:, fetch - 1] < scores[:, k - 1]).all()):
                break
            fetch = min(size, 2 * fetch)
        results: list[list[Hit]] = []
        for row_scores, row_labels in zip(scores, labels, strict=True):
            valid = row_labels >= 0
            results.append(_top_k_settled(row_scores[valid], row_labels[valid], k))
        return results


def _top_k_settled(scores: np.ndarray, ids: np.ndarray, k: int) -> list[Hit]:
    """Re-sort a fetched prefix (which already holds all ties of the k-th score) by score,
    then lower id."""
    order = np.lexsort((ids, -scores))[:k]
    return [(int(ids[i]), float(scores[i])) for i in order]
