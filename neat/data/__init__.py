"""Data: sources of text, tokenizers, the token cache, and batch samplers."""

from neat.data.cache import CACHE_FORMAT_VERSION, TokenCache, default_cache_dir
from neat.data.pipeline import TokenData, prepare_token_data
from neat.data.sampler import BatchSampler, eval_batches
from neat.data.sources import TextFileSource
from neat.data.tokenizers import (
    TOKENIZERS,
    ByteTokenizer,
    CharTokenizer,
    build_tokenizer,
    encode_to_array,
    load_tokenizer,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "TOKENIZERS",
    "BatchSampler",
    "ByteTokenizer",
    "CharTokenizer",
    "TextFileSource",
    "TokenCache",
    "TokenData",
    "build_tokenizer",
    "default_cache_dir",
    "encode_to_array",
    "eval_batches",
    "load_tokenizer",
    "prepare_token_data",
]
