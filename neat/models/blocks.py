"""Transformer building blocks. Each strategy is a small module picked by name from a table,
so new attention, MLP, norm or position variants are added here without touching GPT or the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from neat.config import ModelConfig
from neat.models.attention import CausalSelfAttention, GroupedQueryAttention
from neat.models.cache import LayerKV
from neat.models.hyena import HyenaConfig, HyenaOperator

__all__ = [
    "ATTENTION",
    "MLPS",
    "NORMS",
    "POSITIONS",
    "Block",
    "CausalSelfAttention",
    "GeluMLP",
    "GeluTanhMLP",
    "GroupedQueryAttention",
    "HyenaConfig",
    "HyenaOperator",
    "LearnedPositions",
    "NoPositions",
    "ReLU2MLP",
    "SwiGLU",
    "TransformerConfig",
    "gpt2_init",
]


class TransformerConfig(ModelConfig):
    """Fields every model built from these blocks shares: the strategy names pick entries of
    the tables below. The defaults are GPT-2's blocks, which old checkpoints rely on."""

    # (heads field, width field) of each stack of attention blocks, set by the model's config:
    # the shape checks below run once per stack.
    head_fields: ClassVar[tuple[tuple[str, str], ...]] = ()

    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    bias: bool = True
    pad_vocab_multiple: PositiveInt = Field(
        default=1, description="pad the vocab for faster matmuls"
    )
    attention: Literal["mha", "gqa", "hyena"] = "mha"
    n_kv_head: PositiveInt | None = Field(
        default=None, description="key/value heads of gqa (default: one per query head)"
    )
    qk_norm: bool = Field(default=False, description="RMSNorm over head_dim on q and k")
    hyena: HyenaConfig = Field(default_factory=HyenaConfig)
    mlp: Literal["gelu", "gelu_tanh", "swiglu", "relu2"] = "gelu"
    mlp_hidden: PositiveInt | None = Field(
        default=None, description="default: 4*dim (gelu, gelu_tanh, relu2), ~8*dim/3 (swiglu)"
    )
    mlp_multiple_of: PositiveInt = Field(
        default=64, description="round swiglu's default hidden size up to a multiple of this"
    )
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = Field(default=1e-5, gt=0.0)
    position: Literal["learned", "rope", "none"] = "learned"
    rope_theta: float = Field(default=10000.0, gt=0.0, description="RoPE base wavelength")
    tie_embeddings: bool = Field(default=True, description="lm_head shares wte's weight")

    @model_validator(mode="after")
    def _check_blocks(self) -> TransformerConfig:
        if self.attention == "hyena":
            fixes = {
                "n_kv_head": "remove n_kv_head" if self.n_kv_head is not None else "",
                "qk_norm": "set qk_norm: false" if self.qk_norm else "",
                "position": "set position: learned or none" if self.position == "rope" else "",
            }
            keys = [key for key, fix in fixes.items() if fix]
            if keys:
                raise ValueError(
                    f"attention: hyena has no queries or keys, so {' and '.join(keys)} cannot "
                    f"apply: {', '.join(fixes[k] for k in keys)}, or use attention: mha or gqa"
                )
        if self.n_kv_head is not None and self.attention != "gqa":
            raise ValueError(
                f"n_kv_head is set ({self.n_kv_head}) but attention is {self.attention!r}: "
                "set attention: gqa, or drop n_kv_head"
            )
        for heads_key, width_key in self.head_fields:
            heads, width = getattr(self, heads_key), getattr(self, width_key)
            if self.n_kv_head is not None and heads % self.n_kv_head:
                raise ValueError(
                    f"n_kv_head ({self.n_kv_head}) must divide {heads_key} ({heads}): pick "
                    f"one of {[d for d in range(1, heads + 1) if heads % d == 0]}"
                )
            if self.position == "rope" and width % heads == 0 and (width // heads) % 2:
                raise ValueError(
                    f"position rope needs an even head size, but {width_key} / {heads_key} = "
                    f"{width} / {heads} = {width // heads}: change {width_key} or {heads_key}, "
                    "or use position: learned"
                )
        return self

    def mlp_hidden_size(self, dim: int) -> int:
        """`mlp_hidden`, or each MLP's default: 4*dim; for swiglu 2/3 of that (same parameter
        count with its third matrix), rounded up to `mlp_multiple_of` as in Llama."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.mlp == "swiglu":
            m = self.mlp_multiple_of
            return -(-int(8 * dim / 3) // m) * m
        return 4 * dim


class GeluMLP(nn.Module):
    """The GPT-2 feed-forward: 4x expansion, tanh-free GELU (Hendrycks & Gimpel 2016)."""

    def __init__(self, n_embd: int, cfg: TransformerConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_hidden_size(n_embd)
        self.c_fc = nn.Linear(n_embd, hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dropout(self.c_proj(F.gelu(self.c_fc(x))))
        return out


class GeluTanhMLP(GeluMLP):
    """GELU's tanh approximation (Hendrycks & Gimpel 2016), which GPT-2 was trained with
    (`gelu_new` in its Hugging Face config): imported GPT-2 weights give the same logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.gelu(self.c_fc(x), approximate="tanh")
        out: torch.Tensor = self.dropout(self.c_proj(hidden))
        return out


class ReLU2MLP(GeluMLP):
    """Squared ReLU, relu(x)^2 (So et al. 2021, "Primer"): a cheaper activation that trains
    faster than GELU at the same width."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dropout(self.c_proj(F.relu(self.c_fc(x)).square()))
        return out


class SwiGLU(nn.Module):
    """Gated feed-forward silu(x W_gate) * (x W_up) W_down (Shazeer 2020, "GLU Variants
    Improve Transformer"), as in Llama; `c_proj` is the down projection."""

    def __init__(self, n_embd: int, cfg: TransformerConfig) -> None:
        super().__init__()
        hidden = cfg.mlp_hidden_size(n_embd)
        self.gate_proj = nn.Linear(n_embd, hidden, bias=cfg.bias)
        self.up_proj = nn.Linear(n_embd, hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.gate_proj(x)) * self.up_proj(x)
        out: torch.Tensor = self.dropout(self.c_proj(h))
        return out


class LearnedPositions(nn.Module):
    """Absolute learned position embeddings added to the token embeddings (GPT-2)."""

    def __init__(self, block_size: int, n_embd: int, cfg: TransformerConfig | None = None) -> None:
        super().__init__()
        self.wpe = nn.Embedding(block_size, n_embd)

    def forward(self, x_btc: torch.Tensor, offset: int | torch.Tensor = 0) -> torch.Tensor:
        """`offset` is a (1,) tensor in a static KV cache's steps, an int otherwise."""
        t = x_btc.shape[1]
        if isinstance(offset, int):
            positions = torch.arange(offset, offset + t, device=x_btc.device)
        else:
            positions = torch.arange(t, device=x_btc.device) + offset
        out: torch.Tensor = x_btc + self.wpe(positions)
        return out


class NoPositions(nn.Module):
    """Adds nothing: for `position: none` (causal attention alone still orders tokens;
    Haviv et al. 2022) and `rope`, which the attention applies to q and k."""

    def __init__(self, block_size: int, n_embd: int, cfg: TransformerConfig | None = None) -> None:
        super().__init__()

    def forward(self, x_btc: torch.Tensor, offset: int | torch.Tensor = 0) -> torch.Tensor:
        return x_btc


def layer_norm(n_embd: int, cfg: TransformerConfig) -> nn.Module:
    """LayerNorm (Ba et al. 2016), GPT-2's; the bias follows `bias`."""
    return nn.LayerNorm(n_embd, eps=cfg.norm_eps, bias=cfg.bias)


def rms_norm(n_embd: int, cfg: TransformerConfig) -> nn.Module:
    """RMSNorm (Zhang & Sennrich 2019): scale by the root mean square only, no centring and
    no bias; cheaper than LayerNorm and as good in practice (Llama, T5)."""
    return nn.RMSNorm(n_embd, eps=cfg.norm_eps)


AttentionFactory = Callable[[int, int, TransformerConfig], nn.Module]
MLPFactory = Callable[[int, TransformerConfig], nn.Module]
NormFactory = Callable[[int, TransformerConfig], nn.Module]
PositionFactory = Callable[[int, int, TransformerConfig], nn.Module]

ATTENTION: dict[str, AttentionFactory] = {
    "mha": CausalSelfAttention,
    "gqa": GroupedQueryAttention,
    "hyena": HyenaOperator,
}
MLPS: dict[str, MLPFactory] = {
    "gelu": GeluMLP,
    "gelu_tanh": GeluTanhMLP,
    "swiglu": SwiGLU,
    "relu2": ReLU2MLP,
}
NORMS: dict[str, NormFactory] = {"layernorm": layer_norm, "rmsnorm": rms_norm}
POSITIONS: dict[str, PositionFactory] = {
    "learned": LearnedPositions,
    "rope": NoPositions,
    "none": NoPositions,
}


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, attn: nn.Module, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module) -> None:
        super().__init__()
        self.ln_1 = norm1
        self.attn = attn
        self.ln_2 = norm2
        self.mlp = mlp

    def forward(self, x: torch.Tensor, cache: LayerKV | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + (self.attn(h) if cache is None else self.attn(h, cache))
        out: torch.Tensor = x + self.mlp(self.ln_2(x))
        return out


def gpt2_init(module: nn.Module, n_layer: int) -> None:
    """GPT-2 init: N(0, 0.02), zero biases, residual projections scaled by 1/sqrt(2 * n_layer)."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Linear):
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj") else 0.02
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, mean=0.0, std=0.02)
