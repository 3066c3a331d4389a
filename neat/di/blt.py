"""Builder of `model.type: blt` (the Byte Latent Transformer; Pagnoni et al., arXiv 2412.09871)."""

from __future__ import annotations

from torch import nn

from neat.config.blt import BLTConfig
from neat.di.registry import register_builder
from neat.models.blt.model import BLT

__all__ = ["attach_entropy_patcher", "build_blt"]


def build_blt(cfg: BLTConfig, vocab_size: int) -> nn.Module:
    """A BLT with static patching, or entropy patching when `cfg.entropy_model` is set."""
    model = BLT(cfg, vocab_size)
    if cfg.entropy_model is not None:
        attach_entropy_patcher(model, cfg)
    return model


def attach_entropy_patcher(model: BLT, cfg: BLTConfig) -> None:
    """HOOK (to be completed): set `model.patcher` to an entropy patcher.

    It should load `cfg.entropy_model` with `neat.di.inference.load_for_inference`, freeze it
    (eval, requires_grad False), keep it out of the BLT's modules (a plain callable, so it is
    neither trained nor checkpointed), and return (B, L + 1) starts computed under no_grad from
    its next-byte entropies with `cfg.patching` (mode, threshold or a threshold calibrated to
    target_patch_size) and `cfg.max_patch_length`.
    """
    raise NotImplementedError(
        "entropy patching for model.type blt is not wired yet; remove model.entropy_model to "
        "train with static patches of model.fallback_patch_size bytes"
    )


register_builder("model", "blt", build_blt)
