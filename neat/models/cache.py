"""A key/value cache for incremental decoding (generation only; training never builds one).

Each attention layer appends the keys and values of the new positions and attends over all
of them, so a step costs O(T) instead of recomputing the whole window (O(T^2)).
"""

from __future__ import annotations

import torch

__all__ = ["KVCache", "LayerKV"]


class LayerKV:
    """One layer's keys and values (B, H_kv, T, head_dim), in a buffer of `max_len` positions
    allocated on the first append, so a step writes in place rather than concatenating."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.length = 0
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions; return the keys and values of every position so far."""
        new = k.shape[2]
        end = self.length + new
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: {end} positions exceed its {self.max_len} (model.block_size);"
                " recompute the window instead of caching"
            )
        if self._k is None or self._v is None:
            b, h, _, hd = k.shape
            self._k = k.new_empty(b, h, self.max_len, hd)
            self._v = v.new_empty(b, h, self.max_len, hd)
        self._k[:, :, self.length : end] = k
        self._v[:, :, self.length : end] = v
        self.length = end
        return self._k[:, :, :end], self._v[:, :, :end]


class KVCache:
    """Per-layer caches of a decoder; `offset` is the position the next token will take."""

    def __init__(self, n_layer: int, max_len: int) -> None:
        self.max_len = max_len
        self.layers = [LayerKV(max_len) for _ in range(n_layer)]

    @property
    def offset(self) -> int:
        return self.layers[0].length if self.layers else 0
