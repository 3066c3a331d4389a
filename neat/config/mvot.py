"""`mvot:` — the token discrepancy loss on interleaved text-and-image sequences (MVoT).

Li et al. 2025 (arXiv 2501.07542) train with CE + L_D, L_D charging probability on wrong image
codes by their distance to the right one in the image tokenizer's codebook. Off unless
`discrepancy_weight` > 0; it needs `data.tokenizer.type: image_text`, whose image codes are
those of the grid-world source's image tokenizer (its `image_tokenizer`, or the tile codes).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from neat.config.base import StrictModel

__all__ = ["MVoTConfig"]


class MVoTConfig(StrictModel):
    discrepancy_weight: float = Field(
        default=0.0, ge=0.0, description="loss = CE + discrepancy_weight x L_D (0: CE only)"
    )
    codebook: Literal["embeddings", "pixels"] = Field(
        default="embeddings",
        description="what the distances are taken between: the image tokenizer's code "
        "embeddings (the paper; for the exact tile codes, the tile pixels) or each code's "
        "decoded pixels",
    )
    metric: Literal["mse", "euclidean"] = Field(
        default="mse", description="mse (the paper) or euclidean (the reference code)"
    )

    @field_validator("codebook", mode="before")
    @classmethod
    def _tiles_was_the_first_name(cls, value: object) -> object:
        return "embeddings" if value == "tiles" else value  # configs saved before VQ codes
