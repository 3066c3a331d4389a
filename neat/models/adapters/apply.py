"""The `finetune:` section applied to a built model: the one place a run's adapters are made,
for training, resume, evaluation and generation alike, so a checkpoint always meets the
module tree it was saved from."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
from torch import nn

from neat.config.finetune import FinetuneConfig
from neat.errors import ConfigError

__all__ = ["adapters_disabled", "apply_finetune", "has_adapters"]

if TYPE_CHECKING:
    from neat.models.adapters.lora import LoRALinear
    from neat.models.adapters.svf import SVFLinear

log = structlog.get_logger(__name__)


def apply_finetune(model: nn.Module, cfg: FinetuneConfig) -> list[str]:
    """Wrap the targeted linear layers and freeze the rest; the names wrapped ([] for full).

    For svf the singular value decomposition is of the weights the model holds now: call
    after `model.init_from` is loaded (a checkpoint loaded later brings its own factors)."""
    if cfg.method == "full":
        return []
    try:
        if cfg.method == "lora":
            from neat.models.adapters.lora import apply_lora

            names = apply_lora(
                model,
                rank=cfg.lora.rank,
                alpha=cfg.lora.alpha,
                dropout=cfg.lora.dropout,
                targets=cfg.targets,
            )
        else:
            from neat.models.adapters.svf import apply_svf

            names = apply_svf(model, targets=cfg.targets)
    except ValueError as err:
        raise ConfigError(f"finetune.targets: {err}") from err
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("finetune_applied", method=cfg.method, modules=len(names), trainable=trainable)
    return names


def _adapters(model: nn.Module) -> list[LoRALinear | SVFLinear]:
    from neat.models.adapters.lora import LoRALinear
    from neat.models.adapters.svf import SVFLinear

    return [m for m in model.modules() if isinstance(m, LoRALinear | SVFLinear)]


def has_adapters(model: nn.Module) -> bool:
    return bool(_adapters(model))


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """The base model inside the block, without a copy: every LoRA and SVF layer runs its
    frozen base alone (a reference policy for a KL penalty, pass 1 of Transformer²)."""
    layers = _adapters(model)
    before = [layer.enabled for layer in layers]
    for layer in layers:
        layer.enabled = False
    try:
        yield
    finally:
        for layer, state in zip(layers, before, strict=True):
            layer.enabled = state
