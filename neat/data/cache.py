"""Tokenized corpora on disk, keyed by content, shared by every run and process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from neat.errors import DataError
from neat.interfaces import IDataSource, ITokenizer

log = structlog.get_logger(__name__)

# Bump when the layout or the token stream changes: old entries then simply miss.
CACHE_FORMAT_VERSION = "1"
_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


def default_cache_dir() -> Path:
    """`$NEAT_CACHE_DIR` if set, else `~/.cache/neat`."""
    env = os.environ.get("NEAT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neat"


class TokenCache:
    """Maps (corpus, tokenizer) to a read-only memmap of all their tokens.

    Entries are built in a private temporary folder and renamed into place, so a folder
    under its final name is always complete; one without a valid meta.json is rebuilt.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(self, source: IDataSource, tokenizer: ITokenizer) -> str:
        text = f"{CACHE_FORMAT_VERSION}\n{source.fingerprint()}\n{tokenizer.fingerprint()}"
        return hashlib.sha256(text.encode()).hexdigest()

    def tokens(self, source: IDataSource, tokenizer: ITokenizer) -> np.ndarray:
        key = self.key(source, tokenizer)
        final = self.root / key
        cached = self._open(final)
        if cached is not None:
            log.info(
                "token_cache.hit", key=key[:16], num_tokens=len(cached), source=source.describe()
            )
            return cached
        tmp = self.root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            num_tokens = self._build(tmp, source, tokenizer)
            try:
                os.replace(tmp, final)
            except OSError:
                # The name is taken: by another process that finished first (use theirs), or
                # by a broken leftover of a crash or an older version (replace it).
                if self._open(final) is None:
                    shutil.rmtree(final, ignore_errors=True)
                    os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("token_cache.build", key=key[:16], num_tokens=num_tokens, source=source.describe())
        opened = self._open(final)
        if opened is None:  # pragma: no cover - only if the folder vanished under us
            raise DataError(f"token cache entry {final} disappeared right after it was built")
        return opened

    def _build(self, tmp: Path, source: IDataSource, tokenizer: ITokenizer) -> int:
        dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
        eot = tokenizer.eot_id
        num_tokens = 0
        with (tmp / "tokens.bin").open("wb") as f:
            for doc in source.documents():
                ids = np.asarray(tokenizer.encode(doc.text), dtype=dtype)
                ids.tofile(f)
                num_tokens += len(ids)
                if eot is not None:  # documents stay apart: the model learns where text ends
                    np.asarray([eot], dtype=dtype).tofile(f)
                    num_tokens += 1
            f.flush()
            os.fsync(f.fileno())
        if num_tokens == 0:
            raise DataError(f"{source.describe()} has no tokens (empty files?); check data.path")
        meta = {
            "format_version": CACHE_FORMAT_VERSION,
            "dtype": np.dtype(dtype).name,
            "num_tokens": num_tokens,
            "source": source.describe(),
            "tokenizer_fingerprint": tokenizer.fingerprint(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        with (tmp / "meta.json").open("w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        return num_tokens

    @staticmethod
    def _open(entry: Path) -> np.ndarray | None:
        """The entry's tokens, or None unless meta.json is valid and matches tokens.bin."""
        try:
            meta: Any = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
            dtype = _DTYPES[meta["dtype"]]
            num_tokens = meta["num_tokens"]
            size = (entry / "tokens.bin").stat().st_size
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (
            meta.get("format_version") != CACHE_FORMAT_VERSION
            or not isinstance(num_tokens, int)
            or num_tokens <= 0
            or size != num_tokens * np.dtype(dtype).itemsize
        ):
            return None
        return np.memmap(entry / "tokens.bin", dtype=dtype, mode="r", shape=(num_tokens,))
