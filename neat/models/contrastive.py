"""The bi-encoders' shared loss: InfoNCE over in-batch and mined hard negatives (DPR,
Karpukhin et al. 2020), for neat's own encoder and a fine-tuned sentence-transformers one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["contrastive_forward"]


def contrastive_forward(
    encode: Callable[[torch.Tensor], torch.Tensor],
    input_ids: torch.Tensor,
    targets: torch.Tensor | None,
    pad_id: int,
    temperature: float,
) -> dict[str, Any]:
    """The queries' embeddings alone, or with `targets` (B, P, T) the InfoNCE of each query
    over all B * P passages: row i's own passage is i * P; all-padding passages (missing
    hard negatives) are masked."""
    queries = encode(input_ids)
    if targets is None:
        return {"embeddings": queries}
    batch, per_row, width = targets.shape
    passages = encode(targets.reshape(batch * per_row, width))
    logits = (queries @ passages.T) / temperature
    empty = (targets == pad_id).all(-1).reshape(-1)
    logits = logits.masked_fill(empty.unsqueeze(0), float("-inf"))
    labels = torch.arange(batch, device=logits.device) * per_row
    return {"loss": F.cross_entropy(logits.float(), labels), "logits": logits}
