"""Validation loss, perplexity and bits per byte over a fixed set of batches.

With `evaluation.stream: true` each batch is a window of `evaluation.stream_length` tokens
(default 4 x the model's block_size) that a model with memory (titans) reads in consecutive
pieces of block_size tokens, its state carried from piece to piece: the loss then measures
how well it uses context beyond its training window."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt

from neat.config import EvaluatorConfig, register_component
from neat.data.sampler import eval_batches
from neat.errors import ConfigError, DataError
from neat.interfaces import Batch, IModel
from neat.interfaces.contexts import EvaluatorContext
from neat.models.gpt import IGNORE_INDEX
from neat.optimization.precision import autocast


class LossEvaluatorConfig(EvaluatorConfig):
    """Validation loss, perplexity and bits per byte over a fixed set of batches."""

    type: Literal["lm"] = "lm"
    batches: PositiveInt = Field(default=20, description="validation batches per evaluation")
    batch_size: PositiveInt | None = Field(default=None, description="default: training.batch_size")
    stream: bool = Field(
        default=False,
        description="read each window in pieces of block_size, the model's memory carried "
        "(titans only)",
    )
    stream_length: PositiveInt | None = Field(
        default=None,
        description="tokens per streamed window (read only when stream is true); "
        "default: 4 x model.block_size",
    )


# The model types whose forward takes and returns `state` (named in the error for the others).
STREAMING_MODELS = ("titans",)
# stream_length when unset, in block sizes.
STREAM_BLOCKS = 4


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Summed nats over the UTF-8 bytes they encode, in bits: tokenizer-independent."""
    return total_nats / (math.log(2) * max(total_bytes, 1))


class LossEvaluator:
    """Implements IEvaluator. The batches are fixed at construction, so evals compare.

    Only real targets count: a target of IGNORE_INDEX (a prompt token of prompt/response
    data) adds no nats, no token and no bytes. The model's loss is the mean over its counted
    targets, so each batch weighs by that count.

    `piece_length` streams: each batch is read in consecutive pieces of that many tokens,
    each call given the `state` the one before returned, and each piece weighs by its own
    count. The model must return a `state` (titans); others are refused with a ConfigError.
    """

    def __init__(
        self,
        batches: Sequence[Batch],
        token_bytes: Sequence[int],
        device: torch.device,
        precision: str = "fp32",
        piece_length: int | None = None,
    ) -> None:
        if piece_length is not None and piece_length <= 0:
            raise ValueError(f"piece_length must be positive, got {piece_length}")
        self.batches = list(batches)
        self.device = device
        self.precision = precision
        self.piece_length = piece_length
        byte_table = torch.tensor(list(token_bytes), dtype=torch.long)
        self.counts: list[int] = []
        self.byte_counts: list[int] = []
        self.piece_counts: list[list[int]] = []  # per batch, per piece (one piece unstreamed)
        for batch in self.batches:
            counted = batch.targets != IGNORE_INDEX
            targets = batch.targets[counted]
            self.counts.append(int(targets.numel()))
            self.byte_counts.append(int(byte_table[targets.cpu()].sum()))
            step = piece_length or max(counted.shape[1], 1)
            self.piece_counts.append(
                [int(counted[:, i : i + step].sum()) for i in range(0, counted.shape[1], step)]
            )

    @torch.no_grad()
    def evaluate(self, model: IModel) -> dict[str, float]:
        was_training = model.training
        model.train(False)
        total_nats = torch.zeros((), dtype=torch.float64, device=self.device)
        patches, positions = 0, 0  # for models that cut their input into patches (BLT)
        try:
            for batch, count, piece_counts in zip(
                self.batches, self.counts, self.piece_counts, strict=True
            ):
                if count == 0:
                    continue
                x = batch.input_ids.to(self.device, non_blocking=True)
                y = batch.targets.to(self.device, non_blocking=True)
                if self.piece_length is not None:
                    total_nats += self._streamed_nats(model, x, y, piece_counts)
                    continue
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

    def _streamed_nats(
        self, model: IModel, x: torch.Tensor, y: torch.Tensor, piece_counts: Sequence[int]
    ) -> torch.Tensor:
        """The summed nats of one batch read piece after piece, the state carried along.

        A piece without counted targets is still read: the memory must see it."""
        assert self.piece_length is not None
        step = self.piece_length
        nats = torch.zeros((), dtype=torch.float64, device=self.device)
        state: Any = None
        stateful: Any = model  # IModel's call has no `state`: the one check is below
        for i, count in zip(range(0, x.shape[1], step), piece_counts, strict=True):
            piece_x, piece_y = x[:, i : i + step], y[:, i : i + step]
            with autocast(self.precision, self.device):
                # the first call passes no `state`, so a model without one gets this far
                out = model(piece_x, piece_y) if i == 0 else stateful(piece_x, piece_y, state=state)
            state = out.get("state")
            if state is None:
                raise ConfigError(
                    "evaluation.stream: true needs a model whose memory carries from one call "
                    f"to the next (model.type: {' or '.join(STREAMING_MODELS)}); this "
                    f"{type(model).__name__} model has none: set evaluation.stream: false"
                )
            if count:  # the mean over no targets is NaN
                nats += out["loss"].double() * count
        return nats


def build_loss_evaluator(cfg: LossEvaluatorConfig, ctx: EvaluatorContext) -> LossEvaluator:
    """Fixed batches from every part's val split; streamed, windows of stream_length read in
    pieces of block_size (a multiple of a titans model's segment, so the state carries)."""
    length = ctx.block_size
    if cfg.stream:
        length = cfg.stream_length or STREAM_BLOCKS * ctx.block_size
    batch_size = cfg.batch_size or ctx.batch_size
    splits = ctx.token_data.val_splits()
    try:
        batches = eval_batches(splits, batch_size, length, cfg.batches)
    except DataError:
        if not cfg.stream:
            raise
        tokens = sum(len(s) for s in splits)
        raise DataError(
            f"the val split has {tokens:,} tokens, fewer than one streamed window of "
            f"evaluation.stream_length + 1 = {length + 1:,} tokens; lower "
            "evaluation.stream_length (default 4 x model.block_size), raise data.val_fraction, "
            "or add data"
        ) from None
    return LossEvaluator(
        batches,
        ctx.token_data.tokenizer.token_bytes(),
        ctx.device,
        ctx.precision,
        piece_length=ctx.block_size if cfg.stream else None,
    )


register_component("evaluation", LossEvaluatorConfig, build_loss_evaluator)
