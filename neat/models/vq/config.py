"""`model.type: vq`: the VQ-VAE image tokenizer (van den Oord et al. 2017, arXiv 1711.00937)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveInt

from neat.config import ModelConfig

__all__ = ["VQConfig"]


class VQConfig(ModelConfig):
    """Defaults suit grid worlds rendered with 8 px cells: one code per cell, a codebook a few
    times larger than the number of tile types, so that restarts have spare codes to use.

    Trained as a neat run on rendered grid-world states (examples/vq_grid.yaml); `block_size`
    counts the codes of one training image (crop side squared), for the tokens/s figure."""

    type: Literal["vq"] = "vq"
    block_size: int = Field(
        default=16,
        gt=0,
        description="codes per training image: states are cropped to sqrt(block_size) cells "
        "a side (a square number; a code sees only its own cell, so crops lose nothing)",
    )

    codebook_size: PositiveInt = Field(default=64, description="K: codes in the codebook")
    embed_dim: PositiveInt = Field(default=16, description="D: width of a code embedding")
    patch: PositiveInt = Field(
        default=8, description="pixels per latent side: an H x W image gives H/patch x W/patch"
    )
    hidden: PositiveInt = Field(default=64, description="channels of the conv encoder/decoder")
    beta: NonNegativeFloat = Field(
        default=0.25, description="weight of the commitment loss (the paper's 0.25)"
    )
    decay: float = Field(
        default=0.99, ge=0.0, lt=1.0, description="EMA decay of the codebook statistics"
    )
    restart_below: NonNegativeFloat = Field(
        default=1.0,
        description=(
            "a code whose EMA usage (encoder outputs per step) falls below this is dead and is "
            "moved onto a random encoder output of the batch; 0 turns restarts off"
        ),
    )
