"""Tokenized corpora on disk, keyed by content, shared by every run and process.

One entry is a folder `<root>/<key>/`:

    manifest.json       written last; without a valid one the folder is never used
    shard_00000.bin     tokens, uint16 when the vocabulary fits, else uint32
    shard_00000.mask    (prompt_response data only) uint8, 1 = the token is a training target
    shard_00001.bin     ...
    tokenizer.json      the tokenizer that made the tokens, when it can be saved

The key is a hash of the cache format version, the source's fingerprint (its content), the
tokenizer's fingerprint and the data format, so an unchanged corpus is tokenized once and a
changed one always again. Entries are built in `<root>/.tmp-<key>-<pid>/` and renamed into
place, so a folder under a final name is complete. This module reads entries;
`neat.data.prepare` builds them (and has `TokenCache`, which finds or builds one).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neat.interfaces import IDataSource, ITokenizer

# Bump when the layout or the token stream changes: old entries then simply miss.
CACHE_FORMAT_VERSION = "2"
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
DATA_FORMATS = ("text", "prompt_response")
_DTYPES: dict[str, type[np.unsignedinteger[Any]]] = {"uint16": np.uint16, "uint32": np.uint32}


def default_cache_dir() -> Path:
    """`$NEAT_CACHE_DIR` if set, else `~/.cache/neat`."""
    env = os.environ.get("NEAT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neat"


def token_dtype(vocab_size: int) -> type[np.unsignedinteger[Any]]:
    """uint16 while every id fits (vocab_size <= 65536), else uint32."""
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def shard_name(index: int) -> str:
    return f"shard_{index:05d}"


def cache_key(source: IDataSource, tokenizer: ITokenizer, data_format: str = "text") -> str:
    """The entry name for these tokens: a sha256 of everything the token stream depends on."""
    return key_of(source.fingerprint(), tokenizer.fingerprint(), data_format)


def key_of(source_fingerprint: str, tokenizer_fingerprint: str, data_format: str) -> str:
    """`cache_key` from fingerprints already computed (a source's may read the whole corpus)."""
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data format must be one of {DATA_FORMATS}, got {data_format!r}")
    text = "\n".join([CACHE_FORMAT_VERSION, source_fingerprint, tokenizer_fingerprint, data_format])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Shard:
    """One shard file, opened read-only (a memmap), and its mask when the data has masks."""

    tokens: np.ndarray
    mask: np.ndarray | None

    def __len__(self) -> int:
        return len(self.tokens)


def open_entry(entry: Path) -> tuple[dict[str, Any], list[Shard]] | None:
    """The manifest and shards of a complete entry, or None: no manifest, a manifest of
    another format version, or files that do not match it (truncated, missing)."""
    try:
        manifest: Any = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format_version") != CACHE_FORMAT_VERSION:
            return None
        dtype = np.dtype(_DTYPES[manifest["dtype"]])
        has_mask = manifest["has_mask"]
        listed = manifest["shards"]
        total = manifest["tokens"]
        if not isinstance(has_mask, bool) or not isinstance(total, int) or total <= 0:
            return None
        shards: list[Shard] = []
        for item in listed:
            name, count = item["file"], item["tokens"]
            if not isinstance(name, str) or "/" in name or not isinstance(count, int) or count <= 0:
                return None
            path = entry / name
            if path.stat().st_size != count * dtype.itemsize:
                return None
            mask = None
            if has_mask:
                mask_path = path.with_suffix(".mask")
                if mask_path.stat().st_size != count:
                    return None
                mask = np.memmap(mask_path, dtype=np.uint8, mode="r", shape=(count,))
            tokens = np.memmap(path, dtype=dtype, mode="r", shape=(count,))
            shards.append(Shard(tokens, mask))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not shards or sum(len(s) for s in shards) != total:
        return None
    return manifest, shards


@dataclass(frozen=True)
class PreparedData:
    """A complete cache entry: its folder, manifest and read-only shards."""

    path: Path
    manifest: dict[str, Any]
    shards: tuple[Shard, ...]
    cached: bool = True  # False when this call built it

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def num_tokens(self) -> int:
        return int(self.manifest["tokens"])

    @property
    def documents(self) -> int:
        return int(self.manifest["documents"])

    @property
    def num_bytes(self) -> int:
        return int(self.manifest["bytes"])

    @property
    def has_mask(self) -> bool:
        return bool(self.manifest["has_mask"])

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(str(self.manifest["dtype"]))

    def tokens(self) -> np.ndarray:
        """All tokens as one array (a view when there is one shard, else a copy)."""
        if len(self.shards) == 1:
            return self.shards[0].tokens
        return np.concatenate([s.tokens for s in self.shards])

    def mask(self) -> np.ndarray | None:
        if not self.has_mask:
            return None
        masks = [s.mask for s in self.shards if s.mask is not None]
        return masks[0] if len(masks) == 1 else np.concatenate(masks)


def load_prepared(entry: Path) -> PreparedData | None:
    """The entry at `entry` if it is complete and valid, else None."""
    opened = open_entry(Path(entry))
    if opened is None:
        return None
    manifest, shards = opened
    return PreparedData(Path(entry), manifest, tuple(shards), cached=True)
