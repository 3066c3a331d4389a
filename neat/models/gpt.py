"""A GPT-2 style decoder assembled from the strategy tables in `blocks`."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn
from torch.utils.checkpoint import checkpoint

from neat.config import register_component
from neat.interfaces.contexts import ModelContext
from neat.models.blocks import (
    ATTENTION,
    MLPS,
    NORMS,
    POSITIONS,
    Block,
    TransformerConfig,
    gpt2_init,
)
from neat.models.cache import KVCache
from neat.models.fused_loss import fused_linear_cross_entropy
from neat.models.hyena import hyena_flops_per_token

IGNORE_INDEX = -100


class GPTConfig(TransformerConfig):
    """GPT-2 layout by default; the strategy fields of `TransformerConfig` give Llama-shaped
    (rope, rmsnorm, swiglu, gqa) or attention-free (hyena) decoders on the same skeleton."""

    head_fields: ClassVar[tuple[tuple[str, str], ...]] = (("n_head", "n_embd"),)

    type: Literal["gpt"] = "gpt"
    n_layer: PositiveInt = 4
    n_head: PositiveInt = 4
    n_embd: PositiveInt = 128
    block_size: PositiveInt = Field(default=64, description="context length in tokens")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class GPT(nn.Module):
    """Token embedding -> positions -> N pre-norm blocks -> final norm -> LM head (tied to
    the embedding by default, Press & Wolf 2017)."""

    def __init__(self, cfg: GPTConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        padded = -(-vocab_size // cfg.pad_vocab_multiple) * cfg.pad_vocab_multiple
        self.wte = nn.Embedding(padded, cfg.n_embd)
        self.pos = POSITIONS[cfg.position](cfg.block_size, cfg.n_embd, cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(
                ATTENTION[cfg.attention](cfg.n_embd, cfg.n_head, cfg),
                MLPS[cfg.mlp](cfg.n_embd, cfg),
                NORMS[cfg.norm](cfg.n_embd, cfg),
                NORMS[cfg.norm](cfg.n_embd, cfg),
            )
            for _ in range(cfg.n_layer)
        )
        self.ln_f = NORMS[cfg.norm](cfg.n_embd, cfg)
        self.lm_head = nn.Linear(cfg.n_embd, padded, bias=False)
        gpt2_init(self, cfg.n_layer)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        # Set by the trainer's config (training.activation_checkpointing): trade compute for
        # memory by recomputing each block's activations in the backward pass.
        self.activation_checkpointing = False
        # training.fused_loss: rows per chunk of the fused head + cross-entropy (None: off).
        self.fused_loss_chunk: int | None = None

    @property
    def block_size(self) -> int:
        return self.cfg.block_size

    def make_cache(self) -> KVCache | None:
        """An empty KV cache for generation, or None when the mixer keeps no keys (hyena)."""
        if self.cfg.attention not in ("mha", "gqa"):
            return None
        return KVCache(self.cfg.n_layer, self.cfg.block_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """`cache` (generation only): `input_ids` are the positions after those it holds.
        With `fused_loss_chunk` set and `targets` given, `"logits"` is None: the loss is
        computed without materialising them (`neat.models.fused_loss`)."""
        t = input_ids.shape[1]
        offset = 0 if cache is None else cache.offset
        if isinstance(offset, int) and offset + t > self.cfg.block_size:
            raise ValueError(
                f"sequence length {offset + t} exceeds model.block_size {self.cfg.block_size}"
            )
        x = self.drop(self.pos(self.wte(input_ids), offset))
        for i, block in enumerate(self.blocks):
            if cache is not None:
                x = block(x, cache.layers[i])
            elif self.activation_checkpointing and self.training:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        h = self.ln_f(x)
        if targets is not None and self.fused_loss_chunk:
            fused = fused_linear_cross_entropy(
                h.reshape(-1, h.shape[-1]),
                self.lm_head.weight[: self.vocab_size],  # the padded rows have no targets
                targets.reshape(-1),
                chunk=self.fused_loss_chunk,
            )
            return {"logits": None, "loss": fused}
        logits: torch.Tensor = self.lm_head(h)
        if logits.shape[-1] != self.vocab_size:
            logits = logits[..., : self.vocab_size]
        loss = None
        if targets is not None:
            # Under autocast cross-entropy already runs in fp32; casting the whole logits
            # tensor first would write and read a (batch, seq, vocab) fp32 copy.
            flat = logits if torch.is_autocast_enabled() else logits.float()
            loss = F.cross_entropy(
                flat.view(-1, self.vocab_size),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return {"logits": logits, "loss": loss}

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (nanoGPT's convention, the
        tied token embedding counts because it is the output layer's weight; an untied one
        is a lookup, so only the output layer counts)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(p.numel() for name, p in self.named_parameters() if name.startswith("pos."))
            if self.lm_head.weight is not self.wte.weight:  # untied: the lookup is no matmul
                n -= self.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6N + 12·L·H·Q·T (PaLM, appendix B); for Hyena the
        operator's FFT convolutions and gates replace the attention term."""
        cfg = self.cfg
        if cfg.attention == "hyena":
            mixer = hyena_flops_per_token(cfg.n_embd, seq_len, cfg.hyena)
            return 6.0 * self.num_params() + cfg.n_layer * mixer
        head_dim = cfg.n_embd // cfg.n_head
        return 6.0 * self.num_params() + 12.0 * cfg.n_layer * cfg.n_head * head_dim * seq_len


def build_gpt(cfg: GPTConfig, ctx: ModelContext) -> GPT:
    return GPT(cfg, ctx.vocab_size)


register_component("model", GPTConfig, build_gpt)
