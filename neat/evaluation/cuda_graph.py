"""The one-token decode step captured as a CUDA graph and replayed.

At batch 1 a decoder's step is a few hundred small kernels, and the GPU finishes each before
Python has launched the next: GPT-2 124M measured 0.46 ms of GPU work against 6-8 ms of host
time per token on an H200. A graph replay launches them all at once. It needs a step whose
shapes and host values never change, which the static form of the KV cache provides
(`KVCache.make_static`); the idea is that of gpt-fast and vLLM's decode graphs.
"""

from __future__ import annotations

import torch
from torch import nn

from neat.models.cache import KVCache

__all__ = ["GraphedDecodeStep"]


class GraphedDecodeStep:
    """`step(token)` -> next-token logits (B, V) in fp32, from a replay of a captured graph.

    The cache must hold the prompt; from here on it is static and owned by this object. The
    logits tensor is overwritten by the next step, so read it before calling again."""

    WARMUP_STEPS = 2

    def __init__(self, model: nn.Module, cache: KVCache, batch: int, device: torch.device):
        self._position = cache.make_static()
        self._model = model
        self._cache = cache
        self._token = torch.zeros(batch, 1, dtype=torch.long, device=device)
        # Warm-up runs on a side stream (cuBLAS workspaces, lazy inits) as capture requires;
        # they write keys at the current position, which the first real step overwrites.
        side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP_STEPS):
                self._forward()
        torch.cuda.current_stream(device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._logits = self._forward()

    def _forward(self) -> torch.Tensor:
        out = self._model(self._token, cache=self._cache)
        logits: torch.Tensor = out["logits"][:, -1, :].float()
        return logits

    def step(self, token: torch.Tensor) -> torch.Tensor:
        self._token.copy_(token)
        self._graph.replay()
        self._position += 1
        return self._logits
