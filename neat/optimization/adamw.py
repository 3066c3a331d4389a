"""AdamW with decay / no-decay parameter groups."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from neat.config import OptimizerConfig, register_component
from neat.interfaces.contexts import OptimizerContext
from neat.optimization.schedules import lr_at


class AdamWConfig(OptimizerConfig):
    """AdamW with a warmup + decay schedule, evaluated as a pure function of the step."""

    type: Literal["adamw"] = "adamw"
    lr: float = Field(default=6e-4, gt=0.0)
    min_lr: float = Field(default=6e-5, ge=0.0)
    warmup_steps: int = Field(default=100, ge=0)
    decay_steps: PositiveInt | None = Field(default=None, description="default: training.max_steps")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(default=0.1, ge=0.0)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.95, ge=0.0, lt=1.0)
    eps: float = Field(default=1e-8, gt=0.0)
    fused: bool | None = Field(default=None, description="default: fused on CUDA")

    @model_validator(mode="after")
    def _min_lr_below_lr(self) -> AdamWConfig:
        if self.min_lr > self.lr:  # the schedule would warm up to lr, then climb
            raise ValueError(
                f"min_lr ({self.min_lr:g}) is above lr ({self.lr:g}); the schedule decays from "
                "lr down to min_lr: lower min_lr or raise lr"
            )
        return self


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Matrices (weights of linears and embeddings) decay; biases, norm gains and parameters
    a module marks `no_weight_decay = True` (Hyena's implicit filters) do not."""
    seen: set[int] = set()
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        decays = param.dim() >= 2 and not getattr(param, "no_weight_decay", False)
        (decay if decays else no_decay).append(param)
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


def build_adamw(cfg: AdamWConfig, ctx: OptimizerContext) -> AdamWFactory:
    return AdamWFactory(cfg, ctx.max_steps)


register_component("optimization", AdamWConfig, build_adamw)
