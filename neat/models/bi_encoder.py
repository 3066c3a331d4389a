"""A small bi-encoder: one transformer encoder maps a query and a passage to unit vectors
whose inner product ranks passages (`model.type: bi_encoder`).

Trained with an InfoNCE loss over the batch: each query against its own passage, every other
query's passages (in-batch negatives) and its mined hard negatives (DPR, Karpukhin et al.
2020); the vector is the mean of the last layer over real tokens (Sentence-BERT's pooling,
Reimers & Gurevych 2019), each token weighted by a learnt salience.

With `sentence_transformer: DIR` the encoder is a local sentence-transformers model instead,
fine-tuned with the same loss (neat.models.st_bi_encoder).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from neat.config import ModelConfig, PathStr, register_component
from neat.interfaces.contexts import ModelContext
from neat.models.contrastive import contrastive_forward

__all__ = ["BiEncoder", "BiEncoderConfig", "build_bi_encoder"]


class BiEncoderConfig(ModelConfig):
    """`block_size` is the longest text in tokens: longer ones are cut when embedded, so
    the indexer splits chunks to fit it."""

    type: Literal["bi_encoder"] = "bi_encoder"
    block_size: int = Field(default=256, gt=0)
    n_layer: int = Field(default=2, ge=0, description="0: a bag of token vectors, no attention")
    n_head: int = Field(default=4, ge=1)
    n_embd: int = Field(default=256, ge=8)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    temperature: float = Field(default=0.05, gt=0.0, description="softmax temperature of InfoNCE")
    sentence_transformer: PathStr | None = Field(
        default=None,
        description="a local sentence-transformers folder to fine-tune (its architecture, "
        "weights and tokenizer.json; n_layer, n_head, n_embd and dropout are then unused)",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> BiEncoderConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be a multiple of n_head")
        return self


class BiEncoder(nn.Module):
    """`forward(queries, passages)`: queries (B, T) and passages (B, P, T) token ids padded
    with `pad_id` (the vocabulary size); passage 0 of each row is the query's own. Without
    passages it returns the queries' embeddings only."""

    def __init__(self, cfg: BiEncoderConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = cfg
        self.pad_id = vocab_size
        self.temperature = cfg.temperature
        self.tok_emb = nn.Embedding(vocab_size + 1, cfg.n_embd, padding_idx=vocab_size)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        layer = nn.TransformerEncoderLayer(
            cfg.n_embd,
            cfg.n_head,
            dim_feedforward=4 * cfg.n_embd,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = (
            nn.TransformerEncoder(layer, cfg.n_layer, enable_nested_tensor=False)
            if cfg.n_layer
            else None
        )
        self.norm = nn.LayerNorm(cfg.n_embd)
        self.embedding_dim = cfg.n_embd
        self.max_text_tokens = cfg.block_size
        # each token's weight in the mean (log scale, starting equal): lets training learn
        # IDF-like salience, so frequent tokens stop dominating the pooled vector
        self.tok_salience = nn.Embedding(vocab_size + 1, 1)
        nn.init.zeros_(self.tok_salience.weight)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.tok_emb.weight[self.pad_id].zero_()

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, T) ids -> (N, n_embd) unit vectors; an all-padding row gives zeros."""
        ids = ids[:, : self.config.block_size]
        real = ids != self.pad_id
        x = self.tok_emb(ids)
        if self.encoder is not None:
            x = x + self.pos_emb(torch.arange(ids.shape[1], device=ids.device))
            # a row of padding only would attend to nothing (NaN): let it see its first slot
            blocked = ~real
            blocked[:, 0] = False
            x = self.encoder(x, src_key_padding_mask=blocked)
        x = self.norm(x)
        weights = real.unsqueeze(-1).to(x.dtype) * self.tok_salience(ids).clamp(max=10.0).exp()
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-6)
        return F.normalize(pooled, dim=-1)

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, Any]:
        return contrastive_forward(self.encode, input_ids, targets, self.pad_id, self.temperature)


def build_bi_encoder(cfg: BiEncoderConfig, ctx: ModelContext) -> nn.Module:
    if cfg.sentence_transformer is not None:
        from neat.models.st_bi_encoder import SentenceTransformerBiEncoder

        return SentenceTransformerBiEncoder(cfg, ctx.vocab_size)
    return BiEncoder(cfg, cfg.vocab_size or ctx.vocab_size)


register_component("model", BiEncoderConfig, build_bi_encoder)
