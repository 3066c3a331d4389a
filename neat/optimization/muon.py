"""Muon for the hidden matrices, AdamW for everything else, as one optimizer.

Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers in neural networks",
kellerjordan.github.io/posts/muon) orthogonalises each 2-D weight's momentum with a few
Newton-Schulz steps; it suits the linear layers inside the blocks, not embeddings, the output
head or gains and biases, which keep AdamW (the split of Jordan's `MuonWithAuxAdam`). Liu et
al. 2025 ("Muon is scalable for LLM training", arXiv 2502.16982) scale the update to AdamW's
RMS (`adjust_lr_fn: match_rms_adamw`), so AdamW's lr and weight decay carry over.

One `torch.optim.Optimizer` whose groups say their `algorithm`, so grad clipping, the grad
scaler, `state_dict()` (integer ids, torch's own per-parameter keys) and exact resume work as
for AdamW. Each step calls torch's functional `muon` / `adamw` per group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

import torch
from pydantic import Field
from torch import nn
from torch.optim._muon import DEFAULT_A, DEFAULT_B, DEFAULT_C, EPS, muon
from torch.optim.adamw import adamw

from neat.config import register_component
from neat.interfaces.contexts import OptimizerContext
from neat.optimization.adamw import AdamWConfig, AdamWFactory

__all__ = ["MuonAdamW", "MuonConfig", "MuonFactory", "muon_param_groups"]

# Linear layers that are the model's output, not hidden layers (Jordan: AdamW for the head).
OUTPUT_HEADS = ("lm_head",)


class MuonConfig(AdamWConfig):
    """`lr` and `weight_decay` are Muon's (the blocks' matrices); `adamw_lr` and
    `adamw_weight_decay` AdamW's (embeddings, head, gains, biases), with AdamW's beta1, beta2,
    eps and fused. The schedule (warmup, decay, min_lr) scales both alike. Defaults: Jordan's
    README (Muon lr 0.02, AdamW 3e-4, both weight decay 0.01)."""

    type: Literal["muon"] = "muon"  # type: ignore[assignment]  # a subtype of adamw's fields
    lr: float = Field(default=0.02, gt=0.0, description="Muon's peak lr")
    min_lr: float = Field(default=0.0, ge=0.0, description="Muon's lr at the end of decay")
    weight_decay: float = Field(default=0.01, ge=0.0, description="Muon's (decoupled)")
    adamw_lr: float = Field(default=3e-4, gt=0.0, description="AdamW's peak lr")
    adamw_weight_decay: float = Field(default=0.01, ge=0.0, description="AdamW's matrices'")
    momentum: float = Field(default=0.95, ge=0.0, lt=1.0)
    nesterov: bool = True
    ns_steps: int = Field(default=5, ge=1, lt=100, description="Newton-Schulz iterations")
    adjust_lr_fn: Literal["original", "match_rms_adamw"] = Field(
        default="original",
        description="original: Jordan's sqrt(max(1, rows/cols)); match_rms_adamw: Liu et al.'s "
        "0.2 sqrt(max(rows, cols)), for AdamW's lr and weight decay",
    )


def muon_param_groups(
    model: nn.Module, weight_decay: float, adamw_weight_decay: float
) -> list[dict[str, Any]]:
    """Muon: the weights of the hidden linear layers (2-D, not an output head, not tied to
    an embedding, not marked `no_weight_decay`). AdamW: the rest, matrices decaying and
    1-D parameters not (as `optimization.type: adamw` does)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    hidden: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] not in OUTPUT_HEADS:
            weight = module.weight
            if id(weight) not in embeddings and not getattr(weight, "no_weight_decay", False):
                hidden.add(id(weight))
    seen: set[int] = set()
    groups: dict[str, list[nn.Parameter]] = {"muon": [], "decay": [], "no_decay": []}
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if id(param) in hidden and param.dim() == 2:
            groups["muon"].append(param)
        elif param.dim() >= 2 and not getattr(param, "no_weight_decay", False):
            groups["decay"].append(param)
        else:
            groups["no_decay"].append(param)
    return [
        {"params": groups["muon"], "algorithm": "muon", "weight_decay": weight_decay},
        {"params": groups["decay"], "algorithm": "adamw", "weight_decay": adamw_weight_decay},
        {"params": groups["no_decay"], "algorithm": "adamw", "weight_decay": 0.0},
    ]


class MuonAdamW(torch.optim.Optimizer):
    """Groups with `algorithm: muon` step with torch's Muon, the others with AdamW. A group's
    `lr_scale` (AdamW's: adamw_lr / lr) is what the trainer multiplies the scheduled lr by."""

    def __init__(
        self,
        params: list[dict[str, Any]],
        *,
        lr: float,
        adamw_scale: float,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr_fn: str = "original",
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        fused: bool = False,
    ) -> None:
        muon_keys = {
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_steps": ns_steps,
            "ns_coefficients": (DEFAULT_A, DEFAULT_B, DEFAULT_C),
            "eps": EPS,
            "adjust_lr_fn": adjust_lr_fn,
            "lr_scale": 1.0,
        }
        adamw_keys = {"betas": betas, "eps": eps, "fused": fused, "lr_scale": adamw_scale}
        groups = []
        for group in params:
            keys = muon_keys if group["algorithm"] == "muon" else adamw_keys
            groups.append({**keys, **group})
        for group in groups:
            for p in group["params"] if group["algorithm"] == "muon" else ():
                if p.dim() != 2:
                    raise ValueError(f"Muon steps 2-D parameters only, got shape {tuple(p.shape)}")
        super().__init__(groups, {"lr": lr, "weight_decay": 0.0})
        for group in self.param_groups:  # the first step's lr, before the trainer sets it
            group["lr"] = lr * group["lr_scale"]

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["algorithm"] == "muon":
                self._muon_step(group, params)
            else:
                self._adamw_step(group, params)
        return loss

    def _muon_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        buffers = []
        for p, grad in zip(params, grads, strict=True):
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(grad)
            buffers.append(state["momentum_buffer"])
        muon(
            params,
            grads,
            buffers,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            nesterov=group["nesterov"],
            ns_coefficients=group["ns_coefficients"],
            ns_steps=group["ns_steps"],
            eps=group["eps"],
            adjust_lr_fn=group["adjust_lr_fn"],
            has_complex=False,
        )

    def _adamw_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        fused = bool(group["fused"])
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if not state:  # torch.optim.AdamW's layout, so the state dicts read alike
                device = p.device if fused else torch.device("cpu")
                state["step"] = torch.zeros((), dtype=torch.float32, device=device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        adamw(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            fused=True if fused else None,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )


class MuonFactory(AdamWFactory):
    """Implements IOptimizerFactory for `optimization.type: muon`; the schedule is AdamW's."""

    def __init__(self, cfg: MuonConfig, max_steps: int) -> None:
        super().__init__(cfg, max_steps)
        self.muon = cfg

    def create(self, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
        cfg = self.muon
        scale = cfg.adamw_lr / cfg.lr
        fused = cfg.fused if cfg.fused is not None else device.type == "cuda"
        return MuonAdamW(
            muon_param_groups(model, cfg.weight_decay, cfg.adamw_weight_decay),
            lr=self.lr_at(0),
            adamw_scale=scale,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            ns_steps=cfg.ns_steps,
            adjust_lr_fn=cfg.adjust_lr_fn,
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.eps,
            fused=fused,
        )


def build_muon(cfg: MuonConfig, ctx: OptimizerContext) -> MuonFactory:
    return MuonFactory(cfg, ctx.max_steps)


register_component("optimization", MuonConfig, build_muon)
