"""Segment attention with persistent tokens, the short-term memory of Titans' blocks.

Tokens attend causally within their segment of `segment` tokens, to the `persistent_tokens`
learned tokens (Titans §3.3, eq. 19: input-independent knowledge, also an attention sink)
and, in memory-as-context, to what the long-term memory retrieved for their segment. A
retrieved token j depends on input j, so it is visible only from position j on (the pitfall
of MAC: attending to later retrievals leaks the future). Segments make every segment's cost
fixed and let a stream continue at any segment boundary with only the memory carried.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neat.models.attention import apply_rope, rope_cos_sin
from neat.models.titans.config import TitansConfig

__all__ = ["SegmentAttention"]


class SegmentAttention(nn.Module):
    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__()
        dim = cfg.n_embd
        self.n_head = cfg.n_head
        self.head_dim = dim // cfg.n_head
        self.segment = cfg.segment
        self.dropout = cfg.dropout
        self.rope_theta = cfg.rope_theta if cfg.position == "rope" else None
        self.c_attn = nn.Linear(dim, 3 * dim, bias=cfg.bias)
        self.c_proj = nn.Linear(dim, dim, bias=cfg.bias)
        self.persistent = (
            nn.Parameter(torch.randn(cfg.persistent_tokens, dim) * 0.02)
            if cfg.persistent_tokens
            else None
        )
        self.q_norm = nn.RMSNorm(self.head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_head, self.head_dim).transpose(1, 2)

    def _keys_values(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dim = x.shape[-1]
        k, v = (self._heads(z) for z in self.c_attn(x)[..., dim:].split(dim, dim=-1))
        if self.k_norm is not None:
            k = self.k_norm(k)
        if rope is not None:
            k = apply_rope(k, *rope)
        return k, v

    def forward(self, x: torch.Tensor, retrieved: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D); `retrieved` (B, L, D): memory tokens aligned with x."""
        b, length, dim = x.shape
        w = self.segment
        pad = -length % w
        segments = (length + pad) // w
        fold = [x] if retrieved is None else [x, retrieved]
        xs, *rest = (F.pad(z, (0, 0, 0, pad)).reshape(b * segments, w, dim) for z in fold)
        rope = None
        q = self._heads(self.c_attn(xs)[..., :dim])
        if self.q_norm is not None:
            q = self.q_norm(q)
        if self.rope_theta is not None:  # positions within the segment: offsets are all it sees
            rope = rope_cos_sin(self.head_dim, 0, w, self.rope_theta, q)
            q = apply_rope(q, *rope)
        k, v = self._keys_values(xs, rope)
        causal = torch.ones(w, w, dtype=torch.bool, device=x.device).tril()
        keys, values, masks = [k], [v], [causal]
        if rest:
            kr, vr = self._keys_values(rest[0], rope)
            keys.insert(0, kr)
            values.insert(0, vr)
            masks.insert(0, causal)
        if self.persistent is not None:
            kp, vp = self._keys_values(self.persistent[None].to(x.dtype), None)
            keys.insert(0, kp.expand(b * segments, -1, -1, -1))
            values.insert(0, vp.expand(b * segments, -1, -1, -1))
            masks.insert(0, causal.new_ones(w, kp.shape[2]))
        y = F.scaled_dot_product_attention(
            q,
            torch.cat(keys, dim=2),
            torch.cat(values, dim=2),
            attn_mask=torch.cat(masks, dim=1),
            dropout_p=self.dropout if self.training else 0.0,
        )
        y = y.transpose(1, 2).reshape(b, segments * w, dim)[:, :length]
        out: torch.Tensor = self.c_proj(y)
        return out
