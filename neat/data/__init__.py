"""Data: sources of text, tokenizers, the sharded token cache, and batch samplers.

The samplers (which need torch) load on first use, so a tokenizing worker process that
imports `neat.data.prepare` starts without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from neat.data.bpe import HFTokenizer, train_bpe
from neat.data.cache import CACHE_FORMAT_VERSION, cache_key, default_cache_dir
from neat.data.inspect import inspect_data
from neat.data.pipeline import DataPart, Segment, Split, TokenData, prepare_token_data
from neat.data.prepare import (
    DEFAULT_SHARD_TOKENS,
    PreparedData,
    PrepareInterrupted,
    TokenCache,
    load_prepared,
    prepare_parts,
    prepare_source,
    source_parts,
)
from neat.data.sources import JsonlSource, MixtureSource, ReadReport, TextFileSource
from neat.data.synthetic_math import MathProblem, SyntheticMathSource, problems
from neat.data.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    bpe_cache_path,
    build_tokenizer,
    encode_to_array,
    load_tokenizer,
    train_tokenizer,
)

if TYPE_CHECKING:
    from neat.data.sampler import IGNORE_INDEX, BatchSampler, eval_batches

_LAZY = {"BatchSampler", "IGNORE_INDEX", "eval_batches"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from neat.data import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module 'neat.data' has no attribute {name!r}")


__all__ = [
    "CACHE_FORMAT_VERSION",
    "DEFAULT_SHARD_TOKENS",
    "IGNORE_INDEX",
    "BatchSampler",
    "ByteTokenizer",
    "CharTokenizer",
    "DataPart",
    "HFTokenizer",
    "JsonlSource",
    "MathProblem",
    "MixtureSource",
    "PrepareInterrupted",
    "PreparedData",
    "ReadReport",
    "Segment",
    "Split",
    "SyntheticMathSource",
    "TextFileSource",
    "TokenCache",
    "TokenData",
    "bpe_cache_path",
    "build_tokenizer",
    "cache_key",
    "default_cache_dir",
    "encode_to_array",
    "eval_batches",
    "inspect_data",
    "load_prepared",
    "load_tokenizer",
    "prepare_parts",
    "prepare_source",
    "prepare_token_data",
    "problems",
    "source_parts",
    "train_bpe",
    "train_tokenizer",
]
