"""Builder of `model.type: blt` (the Byte Latent Transformer; Pagnoni et al., arXiv 2412.09871):
static patches by default, entropy patches from a frozen byte LM with `model.entropy_model`."""

from __future__ import annotations

from pathlib import Path

import structlog
import torch
from torch import nn

from neat.config.blt import BLTConfig
from neat.config.loader import validate_config
from neat.di.registry import register_builder
from neat.models.blt.model import BLT
from neat.models.blt.patching import (
    Mode,
    boundaries,
    calibrate_threshold,
    load_entropy_model,
    next_byte_entropies,
)
from neat.persistence import read_checkpoint_meta, resolve_checkpoint

__all__ = ["CALIBRATION_BYTES", "EntropyPatcher", "attach_entropy_patcher", "build_blt"]

log = structlog.get_logger(__name__)

# How much text a threshold is calibrated on when only `target_patch_size` is given.
CALIBRATION_BYTES = 1 << 16


def build_blt(cfg: BLTConfig, vocab_size: int) -> nn.Module:
    """A BLT with static patching, or entropy patching when `cfg.entropy_model` is set."""
    model = BLT(cfg, vocab_size)
    if cfg.entropy_model is not None:
        attach_entropy_patcher(model, cfg)
    return model


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


def attach_entropy_patcher(model: BLT, cfg: BLTConfig) -> None:
    """Load `cfg.entropy_model` (frozen) and make it `model.patcher`.

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
    model.patcher = EntropyPatcher(
        entropy_model, threshold, cfg.patching.mode, cfg.max_patch_length
    )


def _calibration_rows(checkpoint: Path, block_size: int) -> torch.Tensor:
    """(R, block_size) byte ids: the start of the entropy model's training text."""
    from neat.di.builders import make_data_source  # builders imports this module

    meta = read_checkpoint_meta(resolve_checkpoint(checkpoint))
    config = validate_config(meta["config"], source=str(checkpoint))
    data = bytearray()
    for document in make_data_source(config).documents():
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


register_builder("model", "blt", build_blt)
