"""Training pairs as neat data: a source (`data.sources: [{type: pairs, path}]`, whose texts
fit the tokenizer), resumable batches for `model.type: bi_encoder`, and the retrieval
evaluator (`evaluation.type: retrieval`) that scores held-out pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from neat.config import PathStr, SourceConfig, register_component
from neat.config.base import EvaluatorConfig
from neat.errors import ConfigError
from neat.files import sha256_file
from neat.indexing.pairs import TrainingPair, read_pairs
from neat.interfaces import Batch, Document, IModel, ITokenizer
from neat.interfaces.contexts import EvaluatorContext, SourceContext

__all__ = [
    "PairBatches",
    "PairsSource",
    "PairsSourceConfig",
    "RetrievalEvaluator",
    "RetrievalEvaluatorConfig",
    "encode_texts",
    "load_pairs",
]


class PairsSourceConfig(SourceConfig):
    """Pairs written by `neat index train-embedder` (JSON lines of query, passage, negatives)."""

    type: Literal["pairs"] = "pairs"
    path: PathStr
    negatives: int = Field(default=1, ge=0, description="hard negatives per query in a batch")


class PairsSource:
    """Implements IDataSource: each pair's query and passage, one document each, so that a
    BPE tokenizer fitted on the source has seen both sides."""

    def __init__(self, cfg: PairsSourceConfig) -> None:
        self.cfg = cfg
        self.path = Path(cfg.path)

    def pairs(self) -> list[TrainingPair]:
        return load_pairs(self.path, "data.sources[].path")

    def documents(self) -> Iterator[Document]:
        for i, pair in enumerate(self.pairs()):
            yield Document(pair.query, f"{self.path}#{i}:query")
            yield Document(pair.passage, f"{self.path}#{i}:passage")

    def fingerprint(self) -> str:
        return f"pairs:{sha256_file(self.path)}"

    def describe(self) -> str:
        return f"training pairs {self.path}"


def load_pairs(path: Path, key: str) -> list[TrainingPair]:
    if not path.is_file():
        raise ConfigError(f"{key}: no pairs file at {path}; `neat index train-embedder` writes one")
    pairs = read_pairs(path)
    if not pairs:
        raise ConfigError(f"{key}: {path} holds no pairs; index more documents first")
    return pairs


def encode_texts(tokenizer: ITokenizer, texts: Sequence[str], limit: int) -> list[list[int]]:
    return [tokenizer.encode(text)[:limit] for text in texts]


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    width = max(1, max((len(r) for r in rows), default=1))
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class PairBatches:
    """Implements IBatchSource: a seeded shuffle of the pairs per epoch, `batch_size` rows a
    step (this rank's share of them under torchrun); input_ids are the queries, targets the
    passages (own first, then hard negatives; missing ones all padding)."""

    def __init__(
        self,
        pairs: Sequence[TrainingPair],
        tokenizer: ITokenizer,
        *,
        batch_size: int,
        block_size: int,
        negatives: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.pad_id = tokenizer.vocab_size
        self.queries = encode_texts(tokenizer, [p.query for p in pairs], block_size)
        self.passages = [
            encode_texts(tokenizer, [p.passage, *p.negatives[:negatives]], block_size)
            for p in pairs
        ]
        self.per_row = 1 + negatives
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position = 0, 0
        self._order = self._shuffle()

    def _shuffle(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.queries))

    def next_batch(self) -> Batch:
        rows: list[int] = []
        while len(rows) < self.batch_size:
            if self.position >= len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._shuffle()
            take = min(self.batch_size - len(rows), len(self._order) - self.position)
            rows.extend(int(i) for i in self._order[self.position : self.position + take])
            self.position += take
        mine = rows[self.rank :: self.world_size]
        queries = _pad([self.queries[i] for i in mine], self.pad_id)
        slots = [
            (self.passages[i] + [[]] * self.per_row)[: self.per_row] for i in mine
        ]  # fewer mined negatives than asked: padding rows, masked by the model
        flat = _pad([p for row in slots for p in row], self.pad_id)
        targets = flat.reshape(len(mine), self.per_row, flat.shape[1])
        return Batch(
            queries.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
        )

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._shuffle()


class RetrievalEvaluatorConfig(EvaluatorConfig):
    """Held-out pairs: each query ranked against every held-out passage. Reports val_loss
    (InfoNCE over them all), recall_at_1, recall_at_10 and mrr_at_10."""

    type: Literal["retrieval"] = "retrieval"
    path: PathStr
    max_pairs: int = Field(default=1000, ge=1)


class RetrievalEvaluator:
    """Implements IEvaluator for a bi-encoder; the same pairs every call, so numbers compare."""

    def __init__(
        self,
        pairs: Sequence[TrainingPair],
        tokenizer: ITokenizer,
        *,
        block_size: int,
        batch_size: int,
        device: torch.device,
    ) -> None:
        self.pad_id = tokenizer.vocab_size
        self.queries = encode_texts(tokenizer, [p.query for p in pairs], block_size)
        self.passages = encode_texts(tokenizer, [p.passage for p in pairs], block_size)
        self.batch_size, self.device = batch_size, device

    def _embed(self, model: IModel, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        parts = []
        for start in range(0, len(rows), self.batch_size):
            ids = _pad(rows[start : start + self.batch_size], self.pad_id).to(self.device)
            parts.append(model(ids)["embeddings"].float())
        return torch.cat(parts)

    @torch.no_grad()
    def evaluate(self, model: IModel) -> dict[str, float]:
        was_training = model.training
        model.train(False)
        try:
            queries = self._embed(model, self.queries)
            passages = self._embed(model, self.passages)
        finally:
            model.train(was_training)
        scores = queries @ passages.T
        temperature = float(getattr(model, "temperature", 0.05))
        labels = torch.arange(len(queries), device=scores.device)
        loss = torch.nn.functional.cross_entropy(scores / temperature, labels)
        # rank of each query's own passage (0 = first); ties count against it
        rank = (scores > scores.diagonal().unsqueeze(1)).sum(1)
        return {
            "val_loss": float(loss),
            "recall_at_1": float((rank < 1).float().mean()),
            "recall_at_10": float((rank < 10).float().mean()),
            "mrr_at_10": float(torch.where(rank < 10, 1.0 / (rank + 1), 0.0).mean()),
        }


def build_pairs_source(cfg: PairsSourceConfig, ctx: SourceContext) -> PairsSource:
    del ctx
    return PairsSource(cfg)


def build_retrieval_evaluator(
    cfg: RetrievalEvaluatorConfig, ctx: EvaluatorContext
) -> RetrievalEvaluator:
    pairs = load_pairs(Path(cfg.path), "evaluation.path")[: cfg.max_pairs]
    return RetrievalEvaluator(
        pairs,
        ctx.token_data.tokenizer,
        block_size=ctx.block_size,
        batch_size=ctx.batch_size,
        device=ctx.device,
    )


register_component("source", PairsSourceConfig, build_pairs_source)
register_component("evaluation", RetrievalEvaluatorConfig, build_retrieval_evaluator)
