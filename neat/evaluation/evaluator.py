"""Validation loss, perplexity and bits per byte over a fixed set of batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, PositiveInt

from neat.config import EvaluatorConfig, register_component
from neat.data.sampler import eval_batches
from neat.interfaces import Batch, IModel
from neat.interfaces.contexts import EvaluatorContext
from neat.models.gpt import IGNORE_INDEX
from neat.optimization.precision import autocast


class LossEvaluatorConfig(EvaluatorConfig):
    """Validation loss, perplexity and bits per byte over a fixed set of batches."""

    type: Literal["lm"] = "lm"
    batches: PositiveInt = Field(default=20, description="validation batches per evaluation")
    batch_size: PositiveInt | None = Field(default=None, description="default: training.batch_size")


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Summed nats over the UTF-8 bytes they encode, in bits: tokenizer-independent."""
    return total_nats / (math.log(2) * max(total_bytes, 1))


class LossEvaluator:
    """Implements IEvaluator. The batches are fixed at construction, so evals compare.

    Only real targets count: a target of IGNORE_INDEX (a prompt token of prompt/response
    data) adds no nats, no token and no bytes. The model's loss is the mean over its counted
    targets, so each batch weighs by that count.
    """

    def __init__(
        self,
        batches: Sequence[Batch],
        token_bytes: Sequence[int],
        device: torch.device,
        precision: str = "fp32",
    ) -> None:
        self.batches = list(batches)
        self.device = device
        self.precision = precision
        byte_table = torch.tensor(list(token_bytes), dtype=torch.long)
        self.counts: list[int] = []
        self.byte_counts: list[int] = []
        for batch in self.batches:
            targets = batch.targets[batch.targets != IGNORE_INDEX]
            self.counts.append(int(targets.numel()))
            self.byte_counts.append(int(byte_table[targets.cpu()].sum()))

    @torch.no_grad()
    def evaluate(self, model: IModel) -> dict[str, float]:
        was_training = model.training
        model.train(False)
        total_nats = torch.zeros((), dtype=torch.float64, device=self.device)
        patches, positions = 0, 0  # for models that cut their input into patches (BLT)
        try:
            for batch, count in zip(self.batches, self.counts, strict=True):
                if count == 0:
                    continue
                x = batch.input_ids.to(self.device, non_blocking=True)
                y = batch.targets.to(self.device, non_blocking=True)
                with autocast(self.precision, self.device):
                    out = model(x, y)
                total_nats += out["loss"].double() * count
                if out.get("num_patches") is not None:
                    patches += int(out["num_patches"])
                    positions += x.numel()
        finally:
            model.train(was_training)
        nats = float(total_nats)  # the one host sync of an evaluation
        val_loss = nats / max(sum(self.counts), 1)
        metrics = {
            "val_loss": val_loss,
            "val_ppl": math.exp(min(val_loss, 700.0)),
            "val_bpb": bits_per_byte(nats, sum(self.byte_counts)),
        }
        if patches:
            metrics["mean_patch_size"] = positions / patches
        return metrics


def build_loss_evaluator(cfg: LossEvaluatorConfig, ctx: EvaluatorContext) -> LossEvaluator:
    """Fixed batches from every part's val split."""
    batches = eval_batches(
        ctx.token_data.val_splits(), cfg.batch_size or ctx.batch_size, ctx.block_size, cfg.batches
    )
    return LossEvaluator(batches, ctx.token_data.tokenizer.token_bytes(), ctx.device, ctx.precision)


register_component("evaluation", LossEvaluatorConfig, build_loss_evaluator)
