"""`mvot:` — the token discrepancy loss on interleaved text-and-image sequences (MVoT).

Li et al. 2025 (arXiv 2501.07542) train with CE + L_D, L_D charging probability on wrong image
codes by their distance to the right one in the image tokenizer's codebook. Off unless
`discrepancy_weight` > 0; it needs `data.tokenizer.type: image_text`, whose image codes are
the codebook's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neat.config.base import StrictModel

__all__ = ["MVoTConfig"]


class MVoTConfig(StrictModel):
    discrepancy_weight: float = Field(
        default=0.0, ge=0.0, description="loss = CE + discrepancy_weight x L_D (0: CE only)"
    )
    codebook: Literal["tiles"] = Field(
        default="tiles",
        description="whose embeddings give the distances: tiles = the grid world's tile pixels "
        "(the exact tokenizer of neat/data/grid_world/render.py)",
    )
    metric: Literal["mse", "euclidean"] = Field(
        default="mse", description="mse (the paper) or euclidean (the reference code)"
    )
