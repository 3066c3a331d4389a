"""`finetune:` — which weights of a trained model a run may change.

`full` trains every weight (the default when the section is absent); `lora` and `svf` wrap
the linear layers named by `targets` (fnmatch patterns over module names, a bare name matching
the last component) and train only the adapters, from the weights of `model.init_from`.
`objective` says what they are trained on: the next-token loss of the data (`sft`), or a
reward on the model's own answers to synthetic math problems (`reinforce`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from neat.config.base import StrictModel

__all__ = ["DEFAULT_TARGETS", "FinetuneConfig", "LoRAConfig", "ReinforceConfig"]

# every linear layer of the blocks (attention and MLP); the head stays as trained
DEFAULT_TARGETS = ("blocks.*",)


class LoRAConfig(StrictModel):
    """W x + (alpha / rank) B A x, with B = 0 at the start (Hu et al. 2021)."""

    rank: PositiveInt = 8
    alpha: float = Field(default=16.0, gt=0.0, description="the update is scaled by alpha / rank")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="on the low-rank path's input")


class ReinforceConfig(StrictModel):
    """J = E[r(y) log p(y | x)] - kl_coef KL(p || p_base), r = +1 for an exact answer, -1
    otherwise: Transformer²'s objective for z (Sun, Cetin & Tang 2025, eq. 1; Williams 1992)."""

    kl_coef: float = Field(
        default=0.1, ge=0.0, description="weight of the KL divergence to the base model"
    )
    temperature: float = Field(default=1.0, gt=0.0, description="sampling the answers")
    max_new_tokens: PositiveInt | None = Field(
        default=None, description="per answer; default: the batch's longest reference + 2"
    )
    baseline: bool = Field(
        default=True, description="subtract the batch's mean reward (less variance, same mean)"
    )


class FinetuneConfig(StrictModel):
    method: Literal["full", "lora", "svf"] = "full"
    objective: Literal["sft", "reinforce"] = Field(
        default="sft",
        description="sft: next-token loss on the data; reinforce: exact-match reward on "
        "sampled answers to the synthetic_math source's problems, KL to the base",
    )
    targets: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        min_length=1,
        description="module-name patterns of the linear layers to adapt (lora, svf)",
    )
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    reinforce: ReinforceConfig = Field(default_factory=ReinforceConfig)
