"""A key/value cache for incremental decoding (generation only; training never builds one).

Each attention layer appends the keys and values of the new positions and attends over all
of them, so a step costs O(T) instead of recomputing the whole window (O(T^2)).

After the prompt, `KVCache.make_static()` switches it to a fixed-shape form: the position is
a device tensor, every step writes at it and attends over the whole buffer under a mask. No
shape and no Python number then changes from one token to the next, so the step can be
captured once as a CUDA graph and replayed (see `neat.evaluation.cuda_graph`).
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
        # Static mode: a (1,) long tensor shared by every layer, the position being written.
        self.position: torch.Tensor | None = None
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions; return the keys and values of every position so far (in
        static mode the whole buffer: `visible()` masks what is not written yet)."""
        if self.position is not None:
            if self._k is None or self._v is None or k.shape[2] != 1:
                raise ValueError("a static KV cache takes one position a step, after a prompt")
            self._k.index_copy_(2, self.position, k)
            self._v.index_copy_(2, self.position, v)
            return self._k, self._v
        new = k.shape[2]
        end = self.length + new
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: {end} positions exceed its {self.max_len} (model.block_size);"
                " recompute the window instead of caching"
            )
        if self._k is None or self._v is None:
            b, h, _, hd = k.shape
            self._k = k.new_zeros(b, h, self.max_len, hd)
            self._v = v.new_zeros(b, h, self.max_len, hd)
        self._k[:, :, self.length : end] = k
        self._v[:, :, self.length : end] = v
        self.length = end
        return self._k[:, :, :end], self._v[:, :, :end]

    def visible(self) -> torch.Tensor:
        """Static mode: the (1, max_len) mask of positions up to and including the current one
        (a boolean SDPA mask; zeros fill the buffer beyond, as NaN there would leak through)."""
        if self.position is None:
            raise ValueError("visible() is for a static KV cache")
        return (torch.arange(self.max_len, device=self.position.device) <= self.position)[None]


class KVCache:
    """Per-layer caches of a decoder; `offset` is the position the next token will take."""

    def __init__(self, n_layer: int, max_len: int) -> None:
        self.max_len = max_len
        self.layers = [LayerKV(max_len) for _ in range(n_layer)]

    @property
    def offset(self) -> int | torch.Tensor:
        """An int, or in static mode the (1,) position tensor itself (read without a sync)."""
        if not self.layers:
            return 0
        first = self.layers[0]
        return first.length if first.position is None else first.position

    @property
    def static(self) -> bool:
        return bool(self.layers) and self.layers[0].position is not None

    def make_static(self) -> torch.Tensor:
        """Switch to fixed-shape steps after the prompt; returns the shared position tensor,
        which the caller advances (`position += 1`) after each step."""
        first = self.layers[0] if self.layers else None
        if first is None or first._k is None:
            raise ValueError("make_static() needs a prompt in the cache first")
        if first.length >= self.max_len:
            raise ValueError(f"the KV cache is full ({self.max_len} positions)")
        position = torch.tensor([first.length], device=first._k.device)
        for layer in self.layers:
            layer.position = position
        return position
