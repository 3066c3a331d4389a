"""The default objective: the model's own next-token loss on the batch."""

from __future__ import annotations

import torch
from torch import nn

from neat.interfaces import Batch

__all__ = ["NextTokenLoss"]


class NextTokenLoss:
    """Implements IObjective: cross-entropy of the targets, as the model computes it (its
    fused or chunked loss, its loss mask), so the default step is exactly `model(x, y)`."""

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        loss: torch.Tensor = model(batch.input_ids, batch.targets)["loss"]
        return loss

    def metrics(self) -> dict[str, float]:
        return {}
