"""Causal self-attention strategies of the `ATTENTION` table: fused multi-head attention
(GPT-2) and grouped-query attention (Ainslie et al. 2023), both with optional rotary
positions (Su et al. 2021) and QK-norm, and both able to append to a generation KV cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from neat.models.cache import LayerKV

if TYPE_CHECKING:
    from neat.models.blocks import TransformerConfig

__all__ = ["CausalSelfAttention", "GroupedQueryAttention", "apply_rope", "rope_cos_sin"]


_ROPE_TABLES: dict[
    tuple[int, float, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]
] = {}


def _rope_table(
    head_dim: int, end: int, theta: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    exponents = torch.arange(0, head_dim, 2, device=device, dtype=dtype) / head_dim
    freqs = torch.outer(torch.arange(end, device=device, dtype=dtype), theta**-exponents)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rope_cos_sin(
    head_dim: int, start: int, length: int, theta: float, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (length, head_dim) of positions start..start+length-1 (RoFormer, Su et al.
    2021), laid out as cat([freqs, freqs]) like Hugging Face's Llama so its q/k weights import
    without a permutation. Computed in float32 (float64 for float64 inputs) and kept out of
    the module, so the state_dict and the meta-device shapes stay those of the weights; eager
    calls (generation's one token a step) slice a table kept per device instead."""
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    end = start + length
    if torch.compiler.is_compiling():
        cos, sin = _rope_table(head_dim, end, theta, like.device, dtype)
    else:
        key = (head_dim, theta, like.device, dtype)
        table = _ROPE_TABLES.get(key)
        if table is None or table[0].shape[0] < end:
            size = max(end, 2 * table[0].shape[0]) if table is not None else end
            table = _ROPE_TABLES[key] = _rope_table(head_dim, size, theta, like.device, dtype)
        cos, sin = table
    return cos[start:end].to(like.dtype), sin[start:end].to(like.dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin over the last dim of (B, H, T, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class _Attention(nn.Module):
    """What both variants share once q, k, v are split into heads: QK-norm, RoPE, the cache
    and the causal SDPA call (flash kernels on GPU)."""

    def __init__(self, head_dim: int, cfg: TransformerConfig) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.dropout = cfg.dropout
        self.rope_theta = cfg.rope_theta if cfg.position == "rope" else None
        # QK-norm (Henry et al. 2020; the RMSNorm form of OLMo 2 and Qwen3): normalising q and
        # k per head bounds the attention logits, which keeps high learning rates stable.
        self.q_norm = nn.RMSNorm(head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = nn.RMSNorm(head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: LayerKV | None
    ) -> torch.Tensor:
        """q (B, H, T, hd), k and v (B, H_kv, T, hd) -> (B, T, H * hd)."""
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        t = q.shape[2]
        if cache is not None and cache.position is not None:
            return self._attend_static(q, k, v, cache, cache.position)
        past = 0 if cache is None else cache.length
        if self.rope_theta is not None:
            cos, sin = rope_cos_sin(self.head_dim, past, t, self.rope_theta, q)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.append(k, v)
        mask = None
        if past and t > 1:  # queries past..past+t-1 over keys 0..past+t-1
            rows = torch.arange(past, past + t, device=q.device)[:, None]
            mask = torch.arange(past + t, device=q.device)[None, :] <= rows
        return self._sdpa(q, k, v, mask, is_causal=past == 0)

    def _attend_static(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cache: LayerKV,
        position: torch.Tensor,
    ) -> torch.Tensor:
        """One query at a device-tensor position over the whole buffer, masked: the same
        shapes and no host value at every step, as a CUDA graph replay needs."""
        if self.rope_theta is not None:
            cos, sin = rope_cos_sin(self.head_dim, 0, cache.max_len, self.rope_theta, q)
            cos, sin = cos.index_select(0, position), sin.index_select(0, position)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = cache.append(k, v)
        return self._sdpa(q, k, v, cache.visible(), is_causal=False)

    def _sdpa(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        is_causal: bool,
    ) -> torch.Tensor:
        t = q.shape[2]
        # gqa: SDPA shares each key/value head with its group of query heads, uncopied
        gqa = {"enable_gqa": True} if q.shape[1] != k.shape[1] else {}
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            **gqa,
        )
        b, h, _, hd = y.shape
        return y.transpose(1, 2).reshape(b, t, h * hd)


class CausalSelfAttention(_Attention):
    """Multi-head causal attention (Vaswani et al. 2017) with GPT-2's fused q|k|v projection
    `c_attn`; the default, whose state_dict keys and numerics old checkpoints rely on."""

    def __init__(self, n_embd: int, n_head: int, cfg: TransformerConfig) -> None:
        super().__init__(n_embd // n_head, cfg)
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=cfg.bias)

    def forward(self, x_btc: torch.Tensor, cache: LayerKV | None = None) -> torch.Tensor:
        b, t, c = x_btc.shape
        q, k, v = self.c_attn(x_btc).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, self.head_dim).transpose(1, 2) for z in (q, k, v))
        out: torch.Tensor = self.resid_dropout(self.c_proj(self.attend(q, k, v, cache)))
        return out


class GroupedQueryAttention(_Attention):
    """Grouped-query attention (Ainslie et al. 2023, "GQA"): `n_kv_head` key/value heads,
    each shared by n_head / n_kv_head query heads, so the KV cache shrinks by that factor.
    Separate q/k/v projections as in Llama, so its weights map one to one."""

    def __init__(self, n_embd: int, n_head: int, cfg: TransformerConfig) -> None:
        head_dim = n_embd // n_head
        super().__init__(head_dim, cfg)
        self.n_head = n_head
        self.n_kv_head = cfg.n_kv_head or n_head
        self.q_proj = nn.Linear(n_embd, n_head * head_dim, bias=cfg.bias)
        self.k_proj = nn.Linear(n_embd, self.n_kv_head * head_dim, bias=cfg.bias)
        self.v_proj = nn.Linear(n_embd, self.n_kv_head * head_dim, bias=cfg.bias)
        self.c_proj = nn.Linear(n_head * head_dim, n_embd, bias=cfg.bias)

    def forward(self, x_btc: torch.Tensor, cache: LayerKV | None = None) -> torch.Tensor:
        b, t, _ = x_btc.shape
        hd = self.head_dim
        q = self.q_proj(x_btc).view(b, t, self.n_head, hd).transpose(1, 2)
        k = self.k_proj(x_btc).view(b, t, self.n_kv_head, hd).transpose(1, 2)
        v = self.v_proj(x_btc).view(b, t, self.n_kv_head, hd).transpose(1, 2)
        out: torch.Tensor = self.resid_dropout(self.c_proj(self.attend(q, k, v, cache)))
        return out
