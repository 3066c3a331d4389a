"""Config of the Byte Latent Transformer (`model.type: blt`; Pagnoni et al., arXiv 2412.09871).

Bytes are grouped into patches; a small local encoder turns each patch into one latent state,
a global transformer runs over the patches and a small local decoder predicts the next byte.
Without `entropy_model` the patches are static: every `fallback_patch_size` bytes (the paper's
"strided" patching, §2.1). With it, a frozen byte LM's next-byte entropy places the boundaries
(§2.3): `patching.mode` picks the global rule (H > θ) or the approximate monotonic one
(H_t − H_{t−1} > θ), with θ given as `threshold` or calibrated to `target_patch_size`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from neat.config import PathStr, StrictModel
from neat.models.blocks import TransformerConfig

__all__ = ["BLTConfig", "BLTPatchingConfig"]


class BLTPatchingConfig(StrictModel):
    """Entropy patching (used only with `entropy_model`): the rule and its threshold."""

    mode: Literal["global", "monotonic"] = Field(
        default="global", description="global: H > θ; monotonic: H_t − H_{t−1} > θ"
    )
    threshold: float | None = Field(default=None, description="θ in nats")
    target_patch_size: float | None = Field(
        default=None, gt=1.0, description="calibrate θ to this mean patch length in bytes"
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> BLTPatchingConfig:
        if self.threshold is not None and self.target_patch_size is not None:
            raise ValueError("set one of patching.threshold and patching.target_patch_size")
        return self


class BLTConfig(TransformerConfig):
    """Shapes default to a CPU scale (the paper's smallest models, shrunk): 1 encoder layer at
    64 wide, 4 global layers at 128 (= cross_attn_k · local_dim), 2 decoder layers at 64."""

    head_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("local_heads", "local_dim"),
        ("global_heads", "global_dim"),
    )

    type: Literal["blt"] = "blt"
    block_size: PositiveInt = Field(default=256, description="context length in bytes")
    local_dim: PositiveInt = Field(default=64, description="width of encoder and decoder")
    local_heads: PositiveInt = 4
    encoder_layers: PositiveInt = 1
    decoder_layers: PositiveInt = 2
    global_dim: PositiveInt = 128
    global_heads: PositiveInt = 4
    global_layers: PositiveInt = 4
    cross_attn_k: PositiveInt = Field(
        default=2, description="slots per patch in the cross-attentions (the paper's k)"
    )
    hash_ngram_sizes: list[PositiveInt] = Field(
        default_factory=lambda: [3, 4, 5, 6, 7, 8], description="n of the hash n-gram tables"
    )
    hash_buckets: PositiveInt = Field(default=4096, description="rows of each n-gram table")
    entropy_model: PathStr | None = Field(
        default=None, description="run or checkpoint of the byte entropy model; none: static"
    )
    patching: BLTPatchingConfig = Field(default_factory=BLTPatchingConfig)
    fallback_patch_size: PositiveInt = Field(
        default=4, description="static patch length in bytes when there is no entropy model"
    )
    max_patch_length: PositiveInt | None = Field(
        default=None, description="split entropy patches longer than this"
    )

    @field_validator("hash_ngram_sizes")
    @classmethod
    def _distinct_sizes(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"hash_ngram_sizes lists a size more than once: {value}")
        return value

    @model_validator(mode="after")
    def _check(self) -> BLTConfig:
        for dim, heads, what in [
            (self.local_dim, self.local_heads, "local"),
            (self.global_dim, self.global_heads, "global"),
        ]:
            if dim % heads:
                raise ValueError(f"{what}_dim ({dim}) must be divisible by {what}_heads ({heads})")
        patching = self.patching
        if self.entropy_model is not None and (
            patching.threshold is None and patching.target_patch_size is None
        ):
            raise ValueError(
                "model.entropy_model needs patching.threshold or patching.target_patch_size"
            )
        return self

    @property
    def expected_patch_size(self) -> float:
        """Mean bytes per patch the FLOPs estimate assumes."""
        if self.entropy_model is not None and self.patching.target_patch_size is not None:
            return self.patching.target_patch_size
        return float(self.fallback_patch_size)
