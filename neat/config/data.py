"""The `data` section: one or more sources, the tokenizer, the split and the cache."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, model_validator

from neat.config.base import ComponentConfig, PathStr, StrictModel, component, register_config

if TYPE_CHECKING:
    SourceSection: TypeAlias = ComponentConfig
    TokenizerSection: TypeAlias = ComponentConfig
else:
    SourceSection = component("source")
    TokenizerSection = component("tokenizer")


class SourceConfig(ComponentConfig):
    """Fields every source has. `weight` is its share of training batches in a mix."""

    weight: float = Field(default=1.0, gt=0.0)


class FileSourceConfig(SourceConfig):
    """Sources that read files: a file, a folder (recursively) or a glob, filtered by name."""

    path: PathStr | list[PathStr]
    include: list[str] = Field(default_factory=list, description="glob patterns to keep")
    exclude: list[str] = Field(default_factory=list, description="glob patterns to drop")
    on_decode_error: Literal["skip", "replace", "fail"] = Field(
        default="skip", description="a file that is binary or not UTF-8: skip, decode, or stop"
    )


class TextSourceConfig(FileSourceConfig):
    """Plain text, one document per file."""

    type: Literal["text"] = "text"


class JsonlSourceConfig(FileSourceConfig):
    """JSON lines, one document per line: a text field, prompt/response, or chat messages."""

    type: Literal["jsonl"] = "jsonl"
    text_field: str = "text"
    prompt_field: str = "prompt"
    response_field: str = "response"
    messages_field: str = "messages"
    on_bad_line: Literal["skip", "fail"] = Field(
        default="skip", description="a malformed line: skip it (counted) or stop"
    )


class CharTokenizerConfig(ComponentConfig):
    """One token per character seen in the corpus (vocab saved with the run)."""

    type: Literal["char"] = "char"


class ByteTokenizerConfig(ComponentConfig):
    """One token per UTF-8 byte plus an end-of-text token."""

    type: Literal["byte"] = "byte"


class DataConfig(StrictModel):
    """`sources` lists the corpora; `data: {type: text, path: ...}` is shorthand for one."""

    sources: list[SourceSection] = Field(min_length=1)
    format: Literal["text", "prompt_response"] = Field(
        default="text", description="prompt_response: loss only on response tokens"
    )
    tokenizer: TokenizerSection = Field(default_factory=CharTokenizerConfig)
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


for _cls in (TextSourceConfig, JsonlSourceConfig):
    register_config("source", _cls)
register_config("tokenizer", CharTokenizerConfig)
register_config("tokenizer", ByteTokenizerConfig)
