"""Dense embedders for the index: a sentence-transformers model read from a local folder.

Never downloads: a path that is not a folder would otherwise be taken for a hub id by
sentence-transformers, so the folder is checked first and the
model is loaded with `local_files_only=True`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neat.config.indexing import NeatEmbedderConfig, SentenceTransformerEmbedderConfig
from neat.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from neat.interfaces import IEmbedder

__all__ = [
    "EMBEDDER_VERSION",
    "SentenceTransformerEmbedder",
    "build_embedder",
    "embedder_fingerprint",
]

# Bump when `embed` changes what it returns for the same model (pre- or post-processing):
# the fingerprint changes with it, so stored vectors are recomputed.
EMBEDDER_VERSION = "1"
LONG_TEXTS = "long-texts:mean-of-pieces"  # how texts over the token limit are embedded
# Files up to this size (configs, tokenizers) are hashed by content; larger ones (weights) by
# name and size only, so opening a multi-GB model stays instant.
_HASH_CONTENT_BELOW = 1 << 20
# Rewritten by every `save` (it embeds sample similarities), so it says nothing about the
# weights; hidden entries (.git, .cache) are not part of the model either.
_NOT_MODEL_FILES = frozenset({"README.md"})
_INSTALL_HINT = "pip install 'neat[embeddings]'"


class SentenceTransformerEmbedder:
    """`IEmbedder` over a sentence-transformers model in a local folder.

    The folder is checked and fingerprinted at construction (no torch import, so a caller can
    compare fingerprints cheaply); the model itself loads on first use of `dim` or `embed`.
    Rows come back float32 and L2-normalised here, whatever the model's last module does, so
    inner product is cosine similarity.
    """

    def __init__(
        self, path: str | os.PathLike[str], batch_size: int = 32, device: str = "cpu"
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"embedder batch_size must be at least 1, got {batch_size}")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"embedder model folder {os.fspath(path)!r} (resolved: {folder.resolve()}) "
                "does not exist or is not a folder. neat never downloads models: fix "
                "`indexing.embedder.path` (relative paths in a config file resolve against "
                "that file's folder) or save a sentence-transformers model there with "
                "`SentenceTransformer(...).save(folder)`"
            )
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError(
                f"the embedder needs sentence-transformers, which is not installed: {_INSTALL_HINT}"
            )
        self._path = folder.resolve()
        self._batch_size = batch_size
        self._device = device
        self._fingerprint = _fingerprint_folder(self._path)
        self._model: SentenceTransformer | None = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The resolved model folder."""
        return self._path

    @property
    def name(self) -> str:
        """Human-readable identity, for `stats` and messages (not for cache keys)."""
        return f"sentence-transformers:{self._path}"

    @property
    def fingerprint(self) -> str:
        """Changes when the model's files do (content of small files, name and size of large
        ones) or when `EMBEDDER_VERSION` is bumped; independent of where the folder lives, the
        batch size and the device. Store it with the vectors and re-embed when it differs."""
        return self._fingerprint

    @property
    def dim(self) -> int:
        """Width of each vector (loads the model on first use)."""
        self._ensure_loaded()
        assert self._dim is not None
        return self._dim

    @property
    def max_tokens(self) -> int:
        """The most tokens of a text the model reads (its `max_seq_length` less the special
        tokens it adds): the indexer splits chunks to fit, since `embed` drops the rest."""
        model = self._ensure_loaded()
        tokenizer = model.tokenizer
        special = int(tokenizer.num_special_tokens_to_add(pair=False)) if tokenizer else 0
        return max(int(model.max_seq_length or 0) - special, 1)

    def token_count(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text is, special tokens not counted (as in `max_tokens`), with
        the model's own tokenizer and lower-casing; never truncated, so an over-long text is
        measured in full."""
        if isinstance(texts, str):
            raise TypeError("token_count takes a sequence of texts, not a single string")
        items = list(texts)
        if not items:
            return []
        model = self._ensure_loaded()
        if model.tokenizer is None:
            raise ConfigError(f"the model in {self._path} has no text tokenizer")
        if getattr(model[0], "do_lower_case", False):
            items = [item.lower() for item in items]
        encoded = model.tokenizer(items, add_special_tokens=False, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` into a float32 (len(texts), dim) array of unit rows (zero rows stay
        zero). Texts over `max_tokens` are truncated (the indexer splits chunks first)."""
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not a single string")
        items = list(texts)
        for item in items:
            if not isinstance(item, str):
                raise TypeError(f"embed takes strings, got {type(item).__name__}")
        model = self._ensure_loaded()
        assert self._dim is not None
        if not items:
            return np.zeros((0, self._dim), dtype=np.float32)
        raw = model.encode(
            items,
            batch_size=self._batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )
        return _unit_rows(np.asarray(raw, dtype=np.float32))

    def _ensure_loaded(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = self._load()
                self._dim = embedding_dim(self._model)
            return self._model

    def _load(self) -> SentenceTransformer:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # present at construction, broken on import
            raise ConfigError(
                f"the embedder could not import sentence-transformers ({exc}): {_INSTALL_HINT}"
            ) from exc
        _check_device(self._device)
        # `local_files_only` keeps transformers off the network (setting HF_HUB_OFFLINE here
        # would not: huggingface_hub reads it once, at import).
        try:
            with _quiet_progress_bars():
                return SentenceTransformer(
                    str(self._path), device=self._device, local_files_only=True
                )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(
                f"could not load a sentence-transformers model from {self._path}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(path={str(self._path)!r}, device={self._device!r})"


def build_embedder(
    cfg: SentenceTransformerEmbedderConfig | NeatEmbedderConfig | None,
) -> IEmbedder | None:
    """The embedder an `indexing.embedder` section asks for; None when dense search is off."""
    if cfg is None:
        return None
    if isinstance(cfg, NeatEmbedderConfig):
        from neat.indexing.neat_embedder import NeatEmbedder

        return NeatEmbedder(cfg.path, batch_size=cfg.batch_size, device=cfg.device)
    return SentenceTransformerEmbedder(cfg.path, batch_size=cfg.batch_size, device=cfg.device)


def embedder_fingerprint(embedder: IEmbedder) -> str:
    """The key stored vectors are valid for: the embedder's own `fingerprint` when it has one
    (a user's embedder should, as a str property); otherwise its class and width, which cannot
    see a change of weights. An embedder that counts tokens has its long texts embedded in
    pooled pieces (`neat.indexing.token_limit`), and that scheme is part of the key, so the
    vectors of an index built before it (split or truncated chunks) are re-made."""
    own = getattr(embedder, "fingerprint", None)
    if callable(own):
        own = own()
    if not (isinstance(own, str) and own):
        kind = type(embedder)
        own = f"{kind.__module__}.{kind.__qualname__}:dim={embedder.dim}"
    pooled = callable(getattr(embedder, "token_count", None))
    return f"{own}|{LONG_TEXTS}" if pooled else own


def _check_device(device: str) -> None:
    """Name the setting instead of torch's bare assertion when the accelerator is missing."""
    import torch

    kind = device.split(":", 1)[0]
    missing = (kind == "cuda" and not torch.cuda.is_available()) or (
        kind == "mps" and not torch.backends.mps.is_available()
    )
    if missing:
        raise ConfigError(
            f"indexing.embedder.device is {device!r} but this machine has no {kind} device; "
            "set it to 'cpu'"
        )


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float32; all-zero rows are left zero instead of becoming NaN."""
    if vectors.ndim != 2:
        raise ValueError(f"the model returned an array of shape {vectors.shape}, expected 2-D")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def embedding_dim(model: SentenceTransformer) -> int:
    """The output width, through whichever accessor this sentence-transformers has (6.x
    renamed it and warns on the old name); measured on one text when the model cannot say."""
    getter: Any = getattr(model, "get_embedding_dimension", None)
    if getter is None:
        getter = model.get_sentence_embedding_dimension
    dim = getter()
    if dim is None:
        probe = model.encode(["dimension probe"], show_progress_bar=False, convert_to_numpy=True)
        dim = int(np.asarray(probe).shape[-1])
    return int(dim)


@contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Silence transformers' per-load "Loading weights" bar, then restore both libraries'
    switches as they were (they are process-wide)."""
    try:
        hf_logging: Any = importlib.import_module("transformers.utils.logging")
        hub_tqdm: Any = importlib.import_module("huggingface_hub.utils.tqdm")
    except ImportError:  # pragma: no cover - both come with sentence-transformers
        yield
        return
    was_enabled = bool(hf_logging.is_progress_bar_enabled())
    hub_was_disabled = bool(hub_tqdm.are_progress_bars_disabled())
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # also re-enables huggingface_hub's bars
            if hub_was_disabled:
                hub_tqdm.disable_progress_bars()


def _fingerprint_folder(folder: Path) -> str:
    """Hash of the model's files, relative to `folder` so a moved or copied model keeps it."""
    digest = hashlib.sha256(f"neat-embedder:{EMBEDDER_VERSION}\n".encode())
    for file in _model_files(folder):
        rel = file.relative_to(folder).as_posix()
        size = file.stat().st_size
        digest.update(f"{rel}\x00{size}\x00".encode())
        if size < _HASH_CONTENT_BELOW:
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return f"sentence-transformers:{digest.hexdigest()[:32]}"


def _model_files(folder: Path) -> list[Path]:
    """Every regular file under `folder`, sorted, skipping hidden entries and the model card."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name in _NOT_MODEL_FILES:
                continue
            path = Path(root) / name
            if path.is_file():
                found.append(path)
    found.sort(key=lambda p: p.relative_to(folder).as_posix())
    return found
