"""The image tokenizer's objective: reconstruction plus commitment (`model.type: vq`)."""

from __future__ import annotations

import torch
from torch import nn

from neat.interfaces import Batch

__all__ = ["ReconstructionObjective"]


class ReconstructionObjective:
    """Implements IObjective: the VQ-VAE's own loss on the batch's images; logs how many codes
    the batches use (perplexity), which tells a collapsing codebook from a healthy one."""

    def __init__(self) -> None:
        # summed on the device and read at log steps only: no host sync per step
        self._perplexity: torch.Tensor | None = None
        self._steps = 0

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        out = model(batch.input_ids)
        perplexity = out["perplexity"].detach()
        self._perplexity = perplexity if self._perplexity is None else self._perplexity + perplexity
        self._steps += 1
        loss: torch.Tensor = out["loss"]
        return loss

    def metrics(self) -> dict[str, float]:
        if self._perplexity is None:
            return {}
        mean = float(self._perplexity) / self._steps
        self._perplexity, self._steps = None, 0
        return {"code_perplexity": mean}
