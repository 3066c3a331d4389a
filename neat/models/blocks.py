"""Transformer building blocks. Each strategy is a small module picked by name from a table,
so new attention, MLP, norm or position variants are added here without touching GPT or the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from neat.config import ModelConfig


class TransformerConfig(ModelConfig):
    """Fields every model built from these blocks shares: the strategy names pick entries of
    the tables at the bottom of this file."""

    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    bias: bool = True
    pad_vocab_multiple: PositiveInt = Field(
        default=1, description="pad the vocab for faster matmuls"
    )
    attention: Literal["mha"] = "mha"
    mlp: Literal["gelu"] = "gelu"
    norm: Literal["layernorm"] = "layernorm"
    position: Literal["learned"] = "learned"


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention; `scaled_dot_product_attention` picks flash kernels on GPU."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x_btc: torch.Tensor) -> torch.Tensor:
        b, t, c = x_btc.shape
        q, k, v = self.c_attn(x_btc).split(c, dim=2)
        # (B, T, C) -> (B, H, T, C/H)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        out: torch.Tensor = self.resid_dropout(self.c_proj(y))
        return out


class GeluMLP(nn.Module):
    """The GPT-2 feed-forward: 4x expansion, tanh-free GELU."""

    def __init__(self, n_embd: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dropout(self.c_proj(F.gelu(self.c_fc(x))))
        return out


class LearnedPositions(nn.Module):
    """Absolute learned position embeddings added to the token embeddings (GPT-2)."""

    def __init__(self, block_size: int, n_embd: int) -> None:
        super().__init__()
        self.wpe = nn.Embedding(block_size, n_embd)

    def forward(self, x_btc: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x_btc.shape[1], device=x_btc.device)
        out: torch.Tensor = x_btc + self.wpe(positions)
        return out


def layer_norm(n_embd: int, bias: bool) -> nn.Module:
    return nn.LayerNorm(n_embd, bias=bias)


AttentionFactory = Callable[[int, int, float, bool], nn.Module]
MLPFactory = Callable[[int, float, bool], nn.Module]
NormFactory = Callable[[int, bool], nn.Module]
PositionFactory = Callable[[int, int], nn.Module]

ATTENTION: dict[str, AttentionFactory] = {"mha": CausalSelfAttention}
MLPS: dict[str, MLPFactory] = {"gelu": GeluMLP}
NORMS: dict[str, NormFactory] = {"layernorm": layer_norm}
POSITIONS: dict[str, PositionFactory] = {"learned": LearnedPositions}


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, attn: nn.Module, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module) -> None:
        super().__init__()
        self.ln_1 = norm1
        self.attn = attn
        self.ln_2 = norm2
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
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
