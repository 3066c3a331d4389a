"""`IEmbedder` over a bi-encoder neat trained (`indexing.embedder: {type: neat, path: DIR}`).

DIR is what `neat index train-embedder --out DIR` wrote (its `run/` is used), a run
directory, or one checkpoint. The vectors are keyed by the checkpoint's weights and
tokenizer, so a further trained embedder re-embeds the index and an index built with another
embedder is refused at search time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from neat.errors import ConfigError
from neat.files import sha256_file
from neat.interfaces import ITokenizer
from neat.models.bi_encoder import BiEncoder
from neat.models.st_bi_encoder import SentenceTransformerBiEncoder
from neat.persistence.manifest import resolve_checkpoint

__all__ = ["NeatEmbedder"]

RUN_DIR = "run"  # as neat.indexing.train_embedder writes it
Encoder = BiEncoder | SentenceTransformerBiEncoder


class NeatEmbedder:
    """Loads on first use; texts longer than the model's `block_size` tokens are cut, so the
    indexer splits chunks to `max_tokens`."""

    def __init__(
        self, path: str | os.PathLike[str], batch_size: int = 64, device: str = "cpu"
    ) -> None:
        folder = Path(path).expanduser()
        if (folder / RUN_DIR).is_dir():
            folder = folder / RUN_DIR
        if not folder.is_dir():
            raise ConfigError(
                f"indexing.embedder.path {os.fspath(path)!r} (resolved: {folder.resolve()}) "
                "is not a folder: train one with `neat index train-embedder --out DIR` and "
                "set the path to DIR"
            )
        try:
            self.checkpoint = resolve_checkpoint(folder)
        except Exception as exc:  # CheckpointError or a damaged file: one message either way
            raise ConfigError(f"indexing.embedder.path: {exc}") from exc
        self._batch_size = batch_size
        self._device = device
        weights = sha256_file(self.checkpoint / "model.safetensors")
        words = sha256_file(self.checkpoint / "tokenizer.json")
        self._fingerprint = f"neat-bi-encoder:{weights[:16]}:{words[:16]}"
        self._model: Encoder | None = None
        self._tokenizer: ITokenizer | None = None
        self._block_size = 0
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def name(self) -> str:
        return f"neat:{self.checkpoint}"

    @property
    def dim(self) -> int:
        model, _ = self._ensure_loaded()
        return int(model.embedding_dim)

    @property
    def max_tokens(self) -> int:
        self._ensure_loaded()
        return self._block_size

    def token_count(self, texts: Sequence[str]) -> list[int]:
        _, tokenizer = self._ensure_loaded()
        return [len(tokenizer.encode(text)) for text in texts]

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        model, tokenizer = self._ensure_loaded()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = [tokenizer.encode(text)[: self._block_size] for text in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # little padding per batch
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        pad = model.pad_id
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            width = max(1, max(len(ids[i]) for i in rows))
            batch = torch.full((len(rows), width), pad, dtype=torch.long)
            for j, i in enumerate(rows):
                batch[j, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
            vectors = model(batch.to(self._device))["embeddings"].float().cpu().numpy()
            out[rows] = vectors
        return out

    def _ensure_loaded(self) -> tuple[Encoder, ITokenizer]:
        with self._lock:
            if self._model is None or self._tokenizer is None:
                from neat.models.load import load_trained_model

                model, tokenizer, config = load_trained_model(self.checkpoint, self._device)
                if not isinstance(model, BiEncoder | SentenceTransformerBiEncoder):
                    raise ConfigError(
                        f"indexing.embedder.path: {self.checkpoint} is a {config.model.type} "
                        "model, not an embedder; train one with `neat index train-embedder`"
                    )
                self._model, self._tokenizer = model.eval(), tokenizer
                self._block_size = int(model.max_text_tokens)
            return self._model, self._tokenizer

    def __repr__(self) -> str:
        return f"NeatEmbedder(checkpoint={str(self.checkpoint)!r}, device={self._device!r})"
