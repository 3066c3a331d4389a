"""From a source and a tokenizer to train and validation splits, per weighted part.

Each part of the source (a mixture's parts, else the source itself) is prepared into its own
sharded cache entry; its last `val_fraction` of tokens validate and the rest train (as nanoGPT
splits one file). A split is a list of segments, (shard memmap, start, end): nothing is copied.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neat.data.prepare import DEFAULT_SHARD_TOKENS, PreparedData, TokenCache, prepare_parts
from neat.interfaces import IDataSource, ITokenizer


@dataclass(frozen=True)
class Segment:
    """Tokens `start:end` of one shard (and of its mask, when the data has masks)."""

    tokens: np.ndarray
    start: int
    end: int
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= len(self.tokens):
            raise ValueError(
                f"segment {self.start}:{self.end} is outside its shard of {len(self.tokens)}"
            )
        if self.mask is not None and len(self.mask) != len(self.tokens):
            raise ValueError("a segment's mask must be as long as its tokens")

    def __len__(self) -> int:
        return self.end - self.start

    def view(self) -> np.ndarray:
        """The segment's tokens (a view of the shard)."""
        return self.tokens[self.start : self.end]

    def mask_view(self) -> np.ndarray | None:
        return None if self.mask is None else self.mask[self.start : self.end]


@dataclass(frozen=True)
class Split:
    """An ordered list of segments: one part's train or validation tokens."""

    segments: tuple[Segment, ...]
    name: str = "train"

    @classmethod
    def from_array(
        cls, tokens: np.ndarray, mask: np.ndarray | None = None, name: str = "train"
    ) -> Split:
        return cls((Segment(tokens, 0, len(tokens), mask),), name)

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)

    @property
    def has_mask(self) -> bool:
        return any(s.mask is not None for s in self.segments)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.segments[0].tokens.dtype if self.segments else np.dtype(np.uint16)

    def tokens(self) -> np.ndarray:
        """All tokens in order: a view for one segment, else a copy."""
        views = [s.view() for s in self.segments]
        if len(views) == 1:
            return views[0]
        return np.concatenate(views) if views else np.empty(0, self.dtype)

    def mask(self) -> np.ndarray | None:
        """The mask in order (1 where a token is trained), or None without masks."""
        if not self.has_mask:
            return None
        parts = [
            s.mask_view() if s.mask is not None else np.ones(len(s), np.uint8)
            for s in self.segments
        ]
        return np.concatenate([p for p in parts if p is not None])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        tokens = self.tokens()
        if copy or (dtype is not None and np.dtype(dtype) != tokens.dtype):
            return np.array(tokens, dtype=dtype, copy=True)
        return tokens


def split_prepared(
    prepared: PreparedData, val_fraction: float, name: str = ""
) -> tuple[Split, Split]:
    """The first (1 - val_fraction) of the entry's tokens train, the rest validate."""
    total = prepared.num_tokens
    cut = int(total * (1.0 - val_fraction))
    train: list[Segment] = []
    val: list[Segment] = []
    offset = 0
    for shard in prepared.shards:
        n = len(shard)
        if offset < cut:
            train.append(Segment(shard.tokens, 0, min(n, cut - offset), shard.mask))
        if offset + n > cut:
            val.append(Segment(shard.tokens, max(0, cut - offset), n, shard.mask))
        offset += n
    label = f" of {name}" if name else ""
    return (
        Split(tuple(s for s in train if len(s)), f"train split{label}"),
        Split(tuple(s for s in val if len(s)), f"val split{label}"),
    )


@dataclass(frozen=True)
class DataPart:
    """One weighted part of the data: its cache entry and its two splits."""

    source: str
    weight: float
    prepared: PreparedData
    train: Split
    val: Split


@dataclass(frozen=True)
class TokenData:
    """The parts of the data and the tokenizer that made their tokens."""

    parts: tuple[DataPart, ...]
    tokenizer: ITokenizer

    @property
    def train(self) -> Split:
        """Every part's train segments, in part order (e.g. `np.asarray(data.train)`)."""
        return Split(tuple(s for p in self.parts for s in p.train.segments), "train split")

    @property
    def val(self) -> Split:
        return Split(tuple(s for p in self.parts for s in p.val.segments), "val split")

    @property
    def has_mask(self) -> bool:
        return any(p.prepared.has_mask for p in self.parts)

    def weighted_train(self) -> list[tuple[Split, float]]:
        return [(p.train, p.weight) for p in self.parts]

    def val_splits(self) -> list[Split]:
        return [p.val for p in self.parts]


def prepare_token_data(
    source: IDataSource,
    tokenizer: ITokenizer,
    cache: TokenCache | Path,
    val_fraction: float,
    *,
    workers: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    progress: Callable[[int, int], None] | None = None,
    data_format: str | None = None,
) -> TokenData:
    """Prepare (or find) each part's tokens and split them into train and validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    root = cache.root if isinstance(cache, TokenCache) else Path(cache)
    prepared = prepare_parts(
        source,
        tokenizer,
        root,
        workers=workers if workers is not None else (os.cpu_count() or 1),
        shard_tokens=shard_tokens,
        progress=progress,
        data_format=data_format,
    )
    parts = []
    for entry, weight in prepared:
        name = str(entry.manifest.get("source", entry.key))
        train, val = split_prepared(entry, val_fraction, name)
        parts.append(DataPart(name, weight, entry, train, val))
    return TokenData(tuple(parts), tokenizer)


def weighted_splits(
    data: np.ndarray | Split | Sequence[tuple[Split | np.ndarray, float]], name: str = "train"
) -> list[tuple[Split, float]]:
    """A sampler's input as (split, weight) parts: an array or a split is one part."""
    if isinstance(data, np.ndarray):
        return [(Split.from_array(data, name=f"{name} split"), 1.0)]
    if isinstance(data, Split):
        return [(data, 1.0)]
    parts = []
    for split, weight in data:
        s = split if isinstance(split, Split) else Split.from_array(split, name=f"{name} split")
        parts.append((s, float(weight)))
    return parts
