"""The unified model's builder: one backbone, the components it was given.

No model class of its own: the components compose existing ones (torchtune's "components
built from config"). Without blt the backbone reads tokens and is GPT (no titans) or Titans;
with blt it is BLT's global transformer over patches, its blocks Titans blocks when titans is
on. svf and mvot change the training (the adapters, the loss), not the architecture.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neat.config import register_component
from neat.interfaces.contexts import ModelContext
from neat.models.blt.config import BLTConfig
from neat.models.blt.model import BLT, build_blt
from neat.models.gpt import GPT, GPTConfig
from neat.models.titans.config import TitansConfig
from neat.models.titans.model import Titans, TitansBlock
from neat.models.unified.config import NEATConfig, TitansComponent

__all__ = ["MemoryBlock", "backbone_config", "build_neat"]

# the fields every backbone shares with the unified config
_SHARED = (
    "dropout",
    "bias",
    "pad_vocab_multiple",
    "qk_norm",
    "mlp",
    "mlp_hidden",
    "mlp_multiple_of",
    "norm",
    "norm_eps",
    "rope_theta",
    "tie_embeddings",
)


def _shared(cfg: NEATConfig) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in _SHARED}


def _titans(cfg: NEATConfig, titans: TitansComponent, width: int, heads: int) -> TitansConfig:
    segment = titans.segment
    return TitansConfig(
        **_shared(cfg),
        n_layer=cfg.n_layer,
        n_head=heads,
        n_embd=width,
        block_size=-(-cfg.block_size // segment) * segment,  # any length is read; this validates
        variant=titans.variant,
        segment=segment,
        persistent_tokens=titans.persistent_tokens,
        memory=titans.memory,
        position="none" if cfg.position == "none" else "rope",
    )


def backbone_config(cfg: NEATConfig) -> GPTConfig | TitansConfig | BLTConfig:
    """The config of the model that runs: GPT, Titans or BLT (whose global blocks may then be
    Titans blocks, see `build_neat`)."""
    parts = cfg.components
    if parts.blt is not None:
        return BLTConfig(
            **_shared(cfg),
            **parts.blt.model_dump(),
            block_size=cfg.block_size,
            position=cfg.position,
            global_dim=cfg.n_embd,
            global_heads=cfg.n_head,
            global_layers=cfg.n_layer,
        )
    if parts.titans is not None:
        return _titans(cfg, parts.titans, cfg.n_embd, cfg.n_head)
    return GPTConfig(
        **_shared(cfg),
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.n_embd,
        block_size=cfg.block_size,
        attention=cfg.attention,
        n_kv_head=cfg.n_kv_head,
        hyena=cfg.hyena,
        position=cfg.position,
    )


class MemoryBlock(nn.Module):
    """A Titans block as a plain (B, L, D) -> (B, L, D) block: its memory starts fresh at
    every call, as BLT's global model reads each window's patches once."""

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__()
        self.block = TitansBlock(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.block(x)[0]
        return out


def build_neat(cfg: NEATConfig, ctx: ModelContext) -> nn.Module:
    backbone = backbone_config(cfg)
    titans = cfg.components.titans
    if isinstance(backbone, BLTConfig):
        if titans is None:
            return build_blt(backbone, ctx)
        memory_cfg = _titans(cfg, titans, cfg.n_embd, cfg.n_head)
        model = BLT(backbone, ctx.vocab_size, global_block=lambda: MemoryBlock(memory_cfg))
        if backbone.entropy_model is not None:  # as build_blt does
            from neat.models.blt.entropy import entropy_patcher

            model.patcher = entropy_patcher(backbone)
        return model
    if isinstance(backbone, TitansConfig):
        return Titans(backbone, ctx.vocab_size)
    return GPT(backbone, ctx.vocab_size)


register_component("model", NEATConfig, build_neat)
