"""Data: sources of text, tokenizers, the token cache, and batch samplers."""

from neat.data.bpe import HFTokenizer, train_bpe
from neat.data.cache import CACHE_FORMAT_VERSION, TokenCache, default_cache_dir
from neat.data.pipeline import TokenData, prepare_token_data
from neat.data.sampler import BatchSampler, eval_batches
from neat.data.sources import JsonlSource, MixtureSource, ReadReport, TextFileSource
from neat.data.tokenizers import (
    TOKENIZERS,
    ByteTokenizer,
    CharTokenizer,
    bpe_cache_path,
    build_tokenizer,
    encode_to_array,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "TOKENIZERS",
    "BatchSampler",
    "ByteTokenizer",
    "CharTokenizer",
    "HFTokenizer",
    "JsonlSource",
    "MixtureSource",
    "ReadReport",
    "TextFileSource",
    "TokenCache",
    "TokenData",
    "bpe_cache_path",
    "build_tokenizer",
    "default_cache_dir",
    "encode_to_array",
    "eval_batches",
    "load_tokenizer",
    "prepare_token_data",
    "train_bpe",
    "train_tokenizer",
]
