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
place, so a folder under a final name is complete; `neat.data.prepare` builds them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from neat.interfaces import IDataSource, ITokenizer

if TYPE_CHECKING:
    from neat.data.prepare import PreparedData

log = structlog.get_logger(__name__)

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


class TokenCache:
    """A cache root: look entries up by (source, tokenizer, format), or prepare them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(self, source: IDataSource, tokenizer: ITokenizer, data_format: str = "text") -> str:
        return cache_key(source, tokenizer, data_format)

    def get(
        self, source: IDataSource, tokenizer: ITokenizer, data_format: str = "text"
    ) -> PreparedData | None:
        """The complete entry for these tokens, or None (nothing is built)."""
        from neat.data.prepare import load_prepared

        return load_prepared(self.root / self.key(source, tokenizer, data_format))

    def prepare(
        self,
        source: IDataSource,
        tokenizer: ITokenizer,
        *,
        workers: int | None = None,
        shard_tokens: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        data_format: str | None = None,
    ) -> PreparedData:
        """`neat.data.prepare.prepare_source` into this root."""
        from neat.data.prepare import DEFAULT_SHARD_TOKENS, prepare_source

        return prepare_source(
            source,
            tokenizer,
            self.root,
            workers=workers if workers is not None else (os.cpu_count() or 1),
            shard_tokens=shard_tokens if shard_tokens is not None else DEFAULT_SHARD_TOKENS,
            progress=progress,
            data_format=data_format,
        )
