"""Re-ranking search candidates with a sentence-transformers cross-encoder in a local folder.

A cross-encoder reads the query and a chunk together, so it judges relevance better than the
independent vectors of dense search, at the price of one model call per candidate: it only
re-scores the `top` candidates a bm25, dense or hybrid search found (`indexing.rerank`).
Never downloads: the folder is checked first and loaded with `local_files_only=True`.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neat.config.indexing import CrossEncoderRerankConfig
from neat.errors import ConfigError
from neat.indexing.embedders import _quiet_progress_bars

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

__all__ = ["CrossEncoderRerankConfig", "CrossEncoderReranker", "build_reranker"]

_INSTALL_HINT = "pip install 'neat[embeddings]'"


class CrossEncoderReranker:
    """Scores (query, text) pairs with a local cross-encoder; higher is more relevant.

    The folder is checked at construction (cheap, no torch import); the model loads on the
    first `rerank`, so an index that is only built never pays for it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        top: int = 50,
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        if top < 1 or batch_size < 1:
            raise ConfigError(
                f"rerank top and batch_size must be at least 1, got {top}, {batch_size}"
            )
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"cross-encoder folder {os.fspath(path)!r} (resolved: {folder.resolve()}) does "
                "not exist or is not a folder. neat never downloads models: fix "
                "`indexing.rerank.path` (relative paths in a config file resolve against that "
                "file's folder) or save a cross-encoder there with `CrossEncoder(...).save(folder)`"
            )
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError(
                f"re-ranking needs sentence-transformers, which is not installed: {_INSTALL_HINT}"
            )
        self._path = folder.resolve()
        self.top = top
        self._batch_size = batch_size
        self._device = device
        self._model: CrossEncoder | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: CrossEncoderRerankConfig) -> CrossEncoderReranker:
        return cls(cfg.path, top=cfg.top, batch_size=cfg.batch_size, device=cfg.device)

    @property
    def path(self) -> Path:
        """The resolved model folder."""
        return self._path

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One float32 relevance score per text, in the order given."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        model = self._ensure_loaded()
        raw = model.predict(
            [(query, text) for text in texts],
            batch_size=self._batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        out = np.asarray(raw, dtype=np.float32)
        if out.shape != (len(texts),):
            raise ConfigError(
                f"the cross-encoder in {self._path} gave scores of shape {out.shape} for "
                f"{len(texts)} pairs; re-ranking needs a model with one output label"
            )
        return out

    def rerank(self, query: str, candidates: Sequence[tuple[int, str]]) -> list[tuple[int, float]]:
        """(chunk id, score) for every candidate, best first (ties keep the given order)."""
        scores = self.scores(query, [text for _, text in candidates])
        order = np.argsort(-scores, kind="stable")
        return [(candidates[i][0], float(scores[i])) for i in order]

    def _ensure_loaded(self) -> CrossEncoder:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> CrossEncoder:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:  # present at construction, broken on import
            raise ConfigError(
                f"re-ranking could not import sentence-transformers ({exc}): {_INSTALL_HINT}"
            ) from exc
        _check_device(self._device)
        try:
            with _quiet_progress_bars():
                model: CrossEncoder = CrossEncoder(
                    str(self._path), device=self._device, local_files_only=True
                )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(
                f"could not load a cross-encoder from {self._path} (`indexing.rerank.path`): {exc}"
            ) from exc
        if model.num_labels != 1:
            raise ConfigError(
                f"the model in {self._path} has {model.num_labels} output labels; "
                "`indexing.rerank.path` needs a cross-encoder with one (a relevance score)"
            )
        return model

    def __repr__(self) -> str:
        return f"CrossEncoderReranker(path={str(self._path)!r}, top={self.top})"


def _check_device(device: str) -> None:
    """Name the setting instead of torch's bare assertion when the accelerator is missing."""
    import torch

    kind = device.split(":", 1)[0]
    missing = (kind == "cuda" and not torch.cuda.is_available()) or (
        kind == "mps" and not torch.backends.mps.is_available()
    )
    if missing:
        raise ConfigError(
            f"indexing.rerank.device is {device!r} but this machine has no {kind} device; "
            "set it to 'cpu'"
        )


def build_reranker(cfg: CrossEncoderRerankConfig | None) -> CrossEncoderReranker | None:
    """The reranker an `indexing.rerank` section asks for; None when re-ranking is off."""
    return None if cfg is None else CrossEncoderReranker.from_config(cfg)
