"""Shard files of a token cache entry being built: tokens (and masks) appended in order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from neat.data.cache import shard_name

__all__ = ["ShardWriter"]


class ShardWriter:
    """Appends tokens (and masks) to shard files of at most `shard_tokens` tokens."""

    def __init__(self, folder: Path, shard_tokens: int, masked: bool) -> None:
        self.folder = folder
        self.shard_tokens = shard_tokens
        self.masked = masked
        self.shards: list[dict[str, Any]] = []
        self.tokens = 0
        self.trained = 0
        self._files: list[Any] = []
        self._count = 0

    def write(self, tokens: np.ndarray, mask: np.ndarray | None) -> None:
        self.tokens += len(tokens)
        if mask is not None:
            self.trained += int(np.count_nonzero(mask))
        at = 0
        while at < len(tokens):
            if not self._files:
                name = shard_name(len(self.shards))
                self._files = [(self.folder / f"{name}.bin").open("wb")]
                if self.masked:
                    self._files.append((self.folder / f"{name}.mask").open("wb"))
            take = min(self.shard_tokens - self._count, len(tokens) - at)
            tokens[at : at + take].tofile(self._files[0])
            if mask is not None:
                mask[at : at + take].tofile(self._files[1])
            self._count += take
            at += take
            if self._count == self.shard_tokens:
                self._finish()

    def _finish(self) -> None:
        for f in self._files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        self.shards.append({"file": f"{shard_name(len(self.shards))}.bin", "tokens": self._count})
        self._files, self._count = [], 0

    def close(self) -> list[dict[str, Any]]:
        if self._files:
            self._finish()
        return self.shards

    def abort(self) -> None:
        for f in self._files:
            f.close()
        self._files = []
