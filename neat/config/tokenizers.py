"""Config sections of the subword tokenizers (registered under `data.tokenizer.type`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from neat.config.base import ComponentConfig, PathStr, register_config

__all__ = ["BYTE_ALPHABET_SIZE", "BPETokenizerConfig", "HFTokenizerConfig"]

# Byte-level BPE starts from one token per byte; merges and special tokens come on top.
BYTE_ALPHABET_SIZE = 256


class BPETokenizerConfig(ComponentConfig):
    """Byte-level BPE trained on the corpus (on first use, then cached), or loaded from `path`."""

    type: Literal["bpe"] = "bpe"
    vocab_size: int = Field(
        default=4096,
        ge=BYTE_ALPHABET_SIZE + 1,
        description="256 byte tokens + merges + special tokens",
    )
    special_tokens: list[str] = Field(
        default_factory=lambda: ["<|endoftext|>"],
        description="added before the merges; <|endoftext|> separates documents",
    )
    min_frequency: int = Field(default=2, ge=1, description="a pair merges only this often")
    path: PathStr | None = Field(
        default=None, description="a trained tokenizer.json to use instead of training"
    )

    @field_validator("special_tokens")
    @classmethod
    def _specials_are_distinct(cls, value: list[str]) -> list[str]:
        if any(not token for token in value):
            raise ValueError("special tokens must be non-empty strings")
        duplicates = sorted({t for t in value if value.count(t) > 1})
        if duplicates:
            raise ValueError(f"special tokens are listed twice: {duplicates}")
        return value

    @model_validator(mode="after")
    def _vocab_holds_bytes_and_specials(self) -> BPETokenizerConfig:
        needed = BYTE_ALPHABET_SIZE + len(self.special_tokens)
        if self.vocab_size < needed:
            raise ValueError(
                f"vocab_size ({self.vocab_size}) must be at least {needed}: "
                f"{BYTE_ALPHABET_SIZE} byte tokens + {len(self.special_tokens)} special tokens"
            )
        return self


class HFTokenizerConfig(ComponentConfig):
    """Any Hugging Face `tokenizer.json` (GPT-2's, Llama's, ...) loaded by path."""

    type: Literal["hf"] = "hf"
    path: PathStr = Field(description="the tokenizer.json file")
    eot_token: str | None = Field(
        default=None,
        description="end-of-text token; default: the first of <|endoftext|>, </s>, "
        "<|end_of_text|>, <eos> in the vocabulary",
    )


register_config("tokenizer", BPETokenizerConfig)
register_config("tokenizer", HFTokenizerConfig)
