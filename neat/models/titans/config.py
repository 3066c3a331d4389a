"""Config of Titans (`model.type: titans`; Behrouz, Zhong & Mirrokni 2025, arXiv 2501.00663).

A decoder whose blocks pair segment attention with a neural long-term memory that keeps
learning while it reads: `variant` picks how they meet (memory as context, as gate, as
layer). The block strategies of `TransformerConfig` (norm, mlp, qk_norm, rope) apply.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from neat.config import StrictModel
from neat.models.blocks import TransformerConfig

__all__ = ["MemoryConfig", "TitansConfig"]


class MemoryConfig(StrictModel):
    """The long-term memory: an MLP written by gradient steps on ||M(k) - v||^2 (§3.1).

    The paper leaves width, chunk size and gate parameterisation open; these defaults are
    a CPU scale that trains (the lucidrains/titans-pytorch defaults are depth 2, x4)."""

    depth: PositiveInt = Field(default=2, description="layers of the memory MLP (>= 2: deep)")
    expansion: PositiveInt = Field(default=2, description="hidden width = expansion * n_embd")
    chunk_size: PositiveInt = Field(
        default=16, description="tokens whose gradients share the chunk-start weights (§3.2)"
    )
    max_lr: float = Field(
        default=1.0, gt=0.0, description="theta_t = max_lr * sigmoid(.) (momentary lr)"
    )
    max_momentum: float = Field(
        default=0.9,
        ge=0.0,
        lt=1.0,
        description="eta_t = max_momentum * sigmoid(.): below 1, or S and M grow without bound",
    )
    max_update_norm: float | None = Field(
        default=1.0,
        gt=0.0,
        description=(
            "largest Frobenius norm of one chunk's gradient step per memory layer (per "
            "sequence); null: unclipped, the paper's rule, which can diverge on a deep memory"
        ),
    )


class TitansConfig(TransformerConfig):
    """Defaults: 4 blocks of 128 wide, segments of 64 tokens with 4 persistent tokens."""

    head_fields: ClassVar[tuple[tuple[str, str], ...]] = (("n_head", "n_embd"),)

    carries_state: ClassVar[bool] = True

    type: Literal["titans"] = "titans"
    variant: Literal["mac", "mag", "mal"] = Field(
        default="mac", description="memory as context | as gate | as layer (§4)"
    )
    n_layer: PositiveInt = 4
    n_head: PositiveInt = 4
    n_embd: PositiveInt = 128
    block_size: PositiveInt = Field(default=256, description="training context in tokens")
    segment: PositiveInt = Field(
        default=64, description="attention window: tokens attend within their segment"
    )
    persistent_tokens: NonNegativeInt = Field(
        default=4, description="learned input-independent tokens every segment attends to"
    )
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    position: Literal["learned", "rope", "none"] = "rope"

    @model_validator(mode="after")
    def _check_titans(self) -> TitansConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.attention != "mha":
            raise ValueError(
                f"model.attention: {self.attention} does not apply to titans, whose blocks use "
                "their own segment attention: remove model.attention (or set it to mha)"
            )
        if self.position == "learned":
            raise ValueError(
                "model.position: learned does not apply to titans (it reads sequences longer "
                "than block_size): set position: rope or none"
            )
        if self.segment % self.memory.chunk_size:
            raise ValueError(
                f"model.segment ({self.segment}) must be a multiple of model.memory.chunk_size "
                f"({self.memory.chunk_size}), so a segment holds whole memory chunks"
            )
        if self.block_size % self.segment:
            raise ValueError(
                f"model.block_size ({self.block_size}) must be a multiple of model.segment "
                f"({self.segment}), so a stream continues at a segment boundary"
            )
        return self
