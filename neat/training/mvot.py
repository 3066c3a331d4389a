"""MVoT's training objective: next-token cross-entropy plus the token discrepancy loss.

Li et al. 2025 (Multimodal Visualization-of-Thought, arXiv 2501.07542, eq. 3) add to the CE of
an interleaved text-and-image sequence L_D, which charges the probability a model puts on a
wrong image code by how far that code's embedding lies from the right one, so a near miss
costs less than a far one. The distances come from the frozen image tokenizer's codebook.
"""

from __future__ import annotations

import torch
from torch import nn

from neat.interfaces import Batch
from neat.models.mvot.discrepancy import token_discrepancy_loss

__all__ = ["DiscrepancyObjective"]


class DiscrepancyObjective:
    """Implements IObjective: CE + `weight` x L_D on token windows of interleaved sequences.

    `image_code_ids` (K,) are the vocabulary ids of the K image codes, `distances` (K, K) the
    codebook's pairwise distances; both are fixed for the run (the tokenizer is frozen).
    """

    def __init__(self, *, image_code_ids: torch.Tensor, distances: torch.Tensor, weight: float):
        self.image_code_ids = image_code_ids
        self.distances = distances
        self.weight = weight
        # summed on the device and read at log steps only: no host sync per step
        self._sums: dict[str, torch.Tensor] = {}
        self._steps = 0

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        out = model(batch.input_ids, batch.targets)
        ce: torch.Tensor = out["loss"]
        ids = self.image_code_ids.to(batch.targets.device)
        discrepancy = token_discrepancy_loss(
            out["logits"], batch.targets, ids, self.distances.to(batch.targets.device)
        )
        for name, value in (("ce", ce), ("discrepancy", discrepancy)):
            total = self._sums.get(name)
            self._sums[name] = value.detach() if total is None else total + value.detach()
        self._steps += 1
        return ce + self.weight * discrepancy

    def metrics(self) -> dict[str, float]:
        """Mean CE and L_D since the last call (their weighted sum is the logged loss)."""
        if not self._steps:
            return {}
        means = {name: float(total) / self._steps for name, total in self._sums.items()}
        self._sums.clear()
        self._steps = 0
        return means
