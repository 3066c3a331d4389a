"""Validation loss, perplexity and bits per byte over a fixed set of batches."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from neat.interfaces import Batch
from neat.optimization.precision import autocast


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Summed nats over the UTF-8 bytes they encode, in bits: tokenizer-independent."""
    return total_nats / (math.log(2) * max(total_bytes, 1))


class LossEvaluator:
    """Implements IEvaluator. The batches are fixed at construction, so evals compare."""

    def __init__(
        self,
        batches: Sequence[Batch],
        token_bytes: Sequence[int],
        device: torch.device,
        precision: str = "fp32",
    ) -> None:
        self.batches = list(batches)
        self.token_bytes = torch.tensor(list(token_bytes), dtype=torch.long)
        self.device = device
        self.precision = precision

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        total_nats = torch.zeros((), dtype=torch.float64, device=self.device)
        total_tokens = 0
        total_bytes = 0
        try:
            for batch in self.batches:
                x = batch.input_ids.to(self.device, non_blocking=True)
                y = batch.targets.to(self.device, non_blocking=True)
                with autocast(self.precision, self.device):
                    loss = model(x, y)["loss"]
                total_nats += loss.double() * y.numel()
                total_tokens += y.numel()
                total_bytes += int(self.token_bytes[batch.targets].sum())
        finally:
            model.train(was_training)
        nats = float(total_nats)
        val_loss = nats / max(total_tokens, 1)
        return {
            "val_loss": val_loss,
            "val_ppl": math.exp(min(val_loss, 700.0)),
            "val_bpb": bits_per_byte(nats, total_bytes),
        }
