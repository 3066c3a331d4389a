"""AdamW with decay / no-decay parameter groups."""

from __future__ import annotations

import torch
from torch import nn

from neat.config.schema import AdamWConfig
from neat.optimization.schedules import lr_at


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Matrices (weights of linears and embeddings) decay; biases and norm gains do not."""
    seen: set[int] = set()
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class AdamWFactory:
    """Implements IOptimizerFactory for `optimization.type: adamw`."""

    def __init__(self, cfg: AdamWConfig, max_steps: int) -> None:
        self.cfg = cfg
        self.decay_steps = cfg.decay_steps or max_steps

    def create(self, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
        fused = self.cfg.fused if self.cfg.fused is not None else device.type == "cuda"
        return torch.optim.AdamW(
            param_groups(model, self.cfg.weight_decay),
            lr=self.lr_at(0),
            betas=(self.cfg.beta1, self.cfg.beta2),
            eps=self.cfg.eps,
            fused=fused,
        )

    def lr_at(self, step: int) -> float:
        return lr_at(
            step,
            lr=self.cfg.lr,
            min_lr=self.cfg.min_lr,
            warmup_steps=self.cfg.warmup_steps,
            decay_steps=self.decay_steps,
            schedule=self.cfg.schedule,
        )

    @property
    def grad_clip(self) -> float:
        return self.cfg.grad_clip
