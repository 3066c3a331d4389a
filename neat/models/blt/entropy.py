"""Entropy patches for a BLT from a frozen byte LM (paper §2.3): loading the entropy model,
calibrating the threshold, and the patcher the BLT calls on every batch."""

from __future__ import annotations

from pathlib import Path

import structlog
import torch
from torch import nn

from neat.data.sources import build_data_source
from neat.data.tokenizers import ByteTokenizer
from neat.errors import ConfigError
from neat.models.blt.config import BLTConfig
from neat.models.blt.patching import (
    BYTE_VOCAB_SIZE,
    Mode,
    boundaries,
    calibrate_threshold,
    next_byte_entropies,
)
from neat.models.load import load_trained_model

__all__ = ["CALIBRATION_BYTES", "EntropyPatcher", "entropy_patcher", "load_entropy_model"]

log = structlog.get_logger(__name__)

# How much text a threshold is calibrated on when only `target_patch_size` is given.
CALIBRATION_BYTES = 1 << 16


def load_entropy_model(checkpoint: Path, device: str = "cpu") -> tuple[nn.Module, int]:
    """A frozen byte-level entropy model and its context length from a run or checkpoint;
    a CheckpointError if it is missing, a ConfigError if it is not byte-level."""
    model, tokenizer, config = load_trained_model(checkpoint, device)
    if not isinstance(tokenizer, ByteTokenizer) or tokenizer.vocab_size != BYTE_VOCAB_SIZE:
        raise ConfigError(
            f"{checkpoint} is not a byte-level model ({type(tokenizer).__name__}, vocab "
            f"{tokenizer.vocab_size}); an entropy model needs data.tokenizer.type: byte "
            f"(vocab {BYTE_VOCAB_SIZE}), e.g. neat train -c examples/blt_entropy.yaml"
        )
    model.eval().requires_grad_(False)
    return model, config.model.block_size


class EntropyPatcher:
    """Patch starts from a frozen byte LM's next-byte entropies (paper §2.3), (B, L + 1).

    A plain callable, not a module: the entropy model is neither trained, nor handed to the
    optimizer, nor saved in the BLT's checkpoints (the config names it; the builder reloads
    it). Each start reads only earlier bytes, so the BLT stays causal (incremental patching,
    §2.4); the last column, whether the byte after the input starts a patch, comes from the
    entropy predicted at the last position.
    """

    def __init__(
        self, model: nn.Module, threshold: float, mode: Mode, max_patch_length: int | None
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.mode: Mode = mode
        self.max_patch_length = max_patch_length

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        param = next(self.model.parameters(), None)
        if param is not None and param.device != input_ids.device:
            self.model.to(input_ids.device)  # follows the BLT, which moves without it
        entropies = next_byte_entropies(self.model, input_ids, include_next=True)
        starts = boundaries(
            entropies, self.threshold, self.mode, max_patch_length=self.max_patch_length
        )
        return starts.to(input_ids.device)


def entropy_patcher(cfg: BLTConfig) -> EntropyPatcher:
    """The patcher of `cfg.entropy_model` (loaded frozen).

    With `patching.target_patch_size` the threshold is calibrated here, once, on the first
    CALIBRATION_BYTES of the entropy model's own training text, cut into rows of the BLT's
    context (the builder sees no data; the entropy model is normally trained on the BLT's
    corpus). That is deterministic, so every rank and every rebuild (eval, resume) agrees; set
    `patching.threshold` to pin θ outright.
    """
    if cfg.entropy_model is None:
        raise ValueError("model.entropy_model is not set")
    path = Path(cfg.entropy_model)
    entropy_model, _ = load_entropy_model(path)
    threshold = cfg.patching.threshold
    if threshold is None:
        target = cfg.patching.target_patch_size
        if target is None:  # BLTConfig's validator requires one of the two
            raise ValueError("model.entropy_model needs patching.threshold or target_patch_size")
        rows = _calibration_rows(path, cfg.block_size)
        entropies = next_byte_entropies(entropy_model, rows)
        threshold = calibrate_threshold(entropies, target, cfg.patching.mode)
        log.info(
            "blt_threshold_calibrated",
            threshold=threshold,
            target_patch_size=target,
            mode=cfg.patching.mode,
            bytes=rows.numel(),
        )
    return EntropyPatcher(entropy_model, threshold, cfg.patching.mode, cfg.max_patch_length)


def _calibration_rows(checkpoint: Path, block_size: int) -> torch.Tensor:
    """(R, block_size) byte ids: the start of the entropy model's training text."""
    from neat.config import validate_config
    from neat.persistence import read_checkpoint_meta, resolve_checkpoint

    meta = read_checkpoint_meta(resolve_checkpoint(checkpoint))
    config = validate_config(meta["config"], source=str(checkpoint))
    data = bytearray()
    for document in build_data_source(config.data, config.indexing).documents():
        data += document.text.encode("utf-8")
        if len(data) >= CALIBRATION_BYTES:
            break
    rows = min(len(data), CALIBRATION_BYTES) // block_size
    if rows == 0:
        raise ValueError(
            f"the entropy model's training text ({len(data)} bytes) is shorter than one "
            f"context of {block_size} bytes; set model.patching.threshold instead"
        )
    ids = torch.tensor(list(data[: rows * block_size]), dtype=torch.long)
    return ids.view(rows, block_size)
