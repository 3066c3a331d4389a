"""The `data` section: one or more sources, the tokenizer, the split and the cache.

The source and tokenizer types live beside their implementations in `neat.data`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, model_validator

from neat.config.base import ComponentConfig, PathStr, SourceConfig, StrictModel
from neat.config.registry import component, default_config

if TYPE_CHECKING:
    SourceSection: TypeAlias = SourceConfig
    TokenizerSection: TypeAlias = ComponentConfig
else:
    SourceSection = component("source")
    TokenizerSection = component("tokenizer")


class DataConfig(StrictModel):
    """`sources` lists the corpora; `data: {type: text, path: ...}` is shorthand for one."""

    sources: list[SourceSection] = Field(min_length=1)
    format: Literal["text", "prompt_response"] = Field(
        default="text", description="prompt_response: loss only on response tokens"
    )
    tokenizer: TokenizerSection = Field(default_factory=lambda: default_config("tokenizer"))
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    cache_dir: PathStr | None = Field(
        default=None, description="default: $NEAT_CACHE_DIR or ~/.cache/neat"
    )

    @model_validator(mode="before")
    @classmethod
    def _single_source_shorthand(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "sources" in raw:
            return raw
        own = set(cls.model_fields)
        source = {k: v for k, v in raw.items() if k not in own}
        if not source:
            return raw
        return {**{k: v for k, v in raw.items() if k in own}, "sources": [source]}
