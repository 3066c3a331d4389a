"""From a source and a tokenizer to train and validation token arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neat.data.cache import TokenCache
from neat.interfaces import IDataSource, ITokenizer


@dataclass(frozen=True)
class TokenData:
    """The two splits (views of one cached memmap) and the tokenizer that made them."""

    train: np.ndarray
    val: np.ndarray
    tokenizer: ITokenizer


def prepare_token_data(
    source: IDataSource, tokenizer: ITokenizer, cache: TokenCache, val_fraction: float
) -> TokenData:
    """The first (1 - val_fraction) of the tokens train, the rest validate (as nanoGPT)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    tokens = cache.tokens(source, tokenizer)
    split = int(len(tokens) * (1.0 - val_fraction))
    return TokenData(train=tokens[:split], val=tokens[split:], tokenizer=tokenizer)
