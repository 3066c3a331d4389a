"""`finetune:` — which weights of a trained model a run may change.

`full` trains every weight (the default when the section is absent); `lora` and `svf` wrap
the linear layers named by `targets` (fnmatch patterns over module names, a bare name matching
the last component) and train only the adapters, from the weights of `model.init_from`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from neat.config.base import StrictModel

__all__ = ["DEFAULT_TARGETS", "FinetuneConfig", "LoRAConfig"]

# every linear layer of the blocks (attention and MLP); the head stays as trained
DEFAULT_TARGETS = ("blocks.*",)


class LoRAConfig(StrictModel):
    """W x + (alpha / rank) B A x, with B = 0 at the start (Hu et al. 2021)."""

    rank: PositiveInt = 8
    alpha: float = Field(default=16.0, gt=0.0, description="the update is scaled by alpha / rank")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="on the low-rank path's input")


class FinetuneConfig(StrictModel):
    method: Literal["full", "lora", "svf"] = "full"
    targets: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        min_length=1,
        description="module-name patterns of the linear layers to adapt (lora, svf)",
    )
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
