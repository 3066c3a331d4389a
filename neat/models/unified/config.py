"""`model.type: neat`: Project NEAT's unified model, each research component on or off.

One backbone (`n_layer` blocks of `n_embd` with `n_head` heads) and four components:

    blt     reads bytes through BLT's local encoder and decoder (Pagnoni et al. 2024), the
            backbone running over patches; off: the backbone reads tokens
    titans  Titans' neural long-term memory in every backbone block (Behrouz et al. 2025)
    svf     Transformer² singular-value fine-tuning of a trained base (Sun et al. 2025):
            applied as `finetune.method: svf` on `model.init_from`
    mvot    MVoT's token discrepancy loss on interleaved text-and-image data (Li et al. 2025)

A component is on when its section is given (`titans: {}` takes the defaults) or `true`,
off when absent, `null` or `false`. Which combinations can work is checked against the rest of
the experiment in `neat.config.components`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator

from neat.config import PathStr, StrictModel
from neat.models.blocks import TransformerConfig
from neat.models.blt.config import BLTPatchingConfig
from neat.models.titans.config import MemoryConfig

__all__ = [
    "COMPONENTS",
    "BLTComponent",
    "MVoTComponent",
    "NEATComponents",
    "NEATConfig",
    "SVFComponent",
    "TitansComponent",
]

COMPONENTS = ("blt", "titans", "svf", "mvot")


class BLTComponent(StrictModel):
    """BLT's byte front end; the backbone is its global (latent) transformer."""

    local_dim: PositiveInt = Field(default=64, description="width of encoder and decoder")
    local_heads: PositiveInt = 4
    encoder_layers: PositiveInt = 1
    decoder_layers: PositiveInt = 2
    cross_attn_k: PositiveInt = 2
    hash_ngram_sizes: list[PositiveInt] = Field(default_factory=lambda: [3, 4, 5, 6, 7, 8])
    hash_buckets: PositiveInt = 4096
    entropy_model: PathStr | None = None
    patching: BLTPatchingConfig = Field(default_factory=BLTPatchingConfig)
    fallback_patch_size: PositiveInt = 4
    max_patch_length: PositiveInt | None = None


class TitansComponent(StrictModel):
    """The memory in each backbone block; mag by default (it needs no per-segment loop)."""

    variant: Literal["mac", "mag", "mal"] = "mag"
    segment: PositiveInt = Field(default=64, description="attention window of a block")
    persistent_tokens: int = Field(default=4, ge=0)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)


class SVFComponent(StrictModel):
    """Singular-value fine-tuning of the base in `model.init_from`."""

    targets: list[str] | None = Field(
        default=None,
        description="module-name patterns of the adapted layers; default: the backbone's "
        "blocks (blocks.*, or global_model.blocks.* with blt)",
    )


class MVoTComponent(StrictModel):
    """The token discrepancy loss; the data must be interleaved text and image codes."""

    discrepancy_weight: float = Field(default=1.0, gt=0.0)
    codebook: Literal["embeddings", "pixels"] = "embeddings"
    metric: Literal["mse", "euclidean"] = "mse"


def _on_off(value: Any) -> Any:
    """`true` is the defaults, `false` is off (None)."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


class NEATComponents(StrictModel):
    blt: BLTComponent | None = None
    titans: TitansComponent | None = None
    svf: SVFComponent | None = None
    mvot: MVoTComponent | None = None

    @field_validator(*COMPONENTS, mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        return _on_off(value)

    def enabled(self) -> list[str]:
        return [name for name in COMPONENTS if getattr(self, name) is not None]


class NEATConfig(TransformerConfig):
    """Defaults: a 4 x 128 backbone with RoPE (Titans reads windows of any length)."""

    head_fields: ClassVar[tuple[tuple[str, str], ...]] = (("n_head", "n_embd"),)

    type: Literal["neat"] = "neat"
    n_layer: PositiveInt = 4
    n_head: PositiveInt = 4
    n_embd: PositiveInt = 128
    block_size: PositiveInt = Field(default=256, description="context in tokens (bytes with blt)")
    position: Literal["learned", "rope", "none"] = "rope"
    components: NEATComponents = Field(default_factory=NEATComponents)
