"""Exact-match accuracy of greedy answers: in the training distribution, on problems held out
of it, and out of it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, ValidationInfo, model_validator

from neat.config import EvaluatorConfig, register_component
from neat.config.base import source_from_context
from neat.data.synthetic_math import MathProblem, SyntheticMathSourceConfig, labelled_problems
from neat.data.synthetic_math.prompts import (
    IGNORE,
    is_exact_answer,
    newline_ids,
    prompt_separator,
    try_encode,
)
from neat.data.synthetic_math.spec import CONTEXT_KEY
from neat.errors import ConfigError
from neat.interfaces import IModel, ITokenizer
from neat.interfaces.contexts import EvaluatorContext
from neat.optimization.precision import autocast

log = structlog.get_logger(__name__)


class ExactMatchEvaluatorConfig(EvaluatorConfig):
    """Greedy answers to held-out synthetic math problems, scored by exact match.

    Reports `acc`, `acc_id`, `acc_heldout`, `acc_ood`, the same per level (`acc_id_L1`, ...),
    `val_loss` (mean loss on the in-distribution answers' tokens, for best-checkpoint tracking)
    and `ood_loss`.
    """

    type: Literal["exact_match"] = "exact_match"
    num_problems: PositiveInt = Field(
        default=200, description="problems per test split (id, heldout and ood each)"
    )
    max_new_tokens: PositiveInt | None = Field(
        default=None, description="default: the longest answer's tokens + 1 (the newline)"
    )
    batch_size: PositiveInt = Field(default=128, description="problems generated at once")
    source: SyntheticMathSourceConfig | None = Field(
        default=None, description="default: the first synthetic_math source in data.sources"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_source(cls, raw: Any, info: ValidationInfo) -> Any:
        return source_from_context(raw, info, CONTEXT_KEY)


Losses = dict[str, tuple[float, int]]  # name -> (summed nats, token count)


@dataclass(frozen=True)
class _Encoded:
    problem: MathProblem
    prompt: list[int]  # separator + question
    answer: list[int]  # answer + newline


def teacher_forced_batch(
    pairs: Sequence[tuple[list[int], list[int]]], block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets for (prompt, continuation) pairs: the targets are the
    continuation's tokens (IGNORE elsewhere), each row cut to its last `block_size` tokens and
    right padded, which is exact for a causal model."""
    rows, targets = [], []
    for prompt, continuation in pairs:
        seq = prompt + continuation
        inputs, labels = seq[:-1], [IGNORE] * (len(prompt) - 1) + continuation
        rows.append(inputs[-block_size:])
        targets.append(labels[-block_size:])
    width = max(len(r) for r in rows)
    x = torch.zeros(len(rows), width, dtype=torch.long)
    y = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (r, t) in enumerate(zip(rows, targets, strict=True)):
        x[i, : len(r)] = torch.tensor(r)
        y[i, : len(t)] = torch.tensor(t)
    return x, y


class ExactMatchEvaluator:
    """Implements IEvaluator: greedy answers to fixed problems, scored by exact match.

    Each prompt is a document separator (the tokenizer's end-of-text token, else a newline, as
    in the training stream) followed by the question. Generation is greedy and batched over
    prompts of equal token length (exact: no padding, so no attention mask is needed) and
    stops at a newline or after `max_new_tokens`. An answer is right when the text before the
    first newline equals the reference and a newline was produced.

    Metrics: `acc` (all problems) and, for each split present (`id`, `heldout`, `ood`: see
    `neat.data.synthetic_math`), `acc_<split>`, `acc_<split>_L<n>` per level and
    `acc_<split>_L<n>_<operation>` for a level of several operations when `operations` are
    given; `val_loss` (mean cross-entropy of the in-distribution answers' tokens, id and
    heldout, teacher forced) and `ood_loss`; `unencodable` when some problems could not be
    tokenized (they count as wrong).
    """

    def __init__(
        self,
        problems: Sequence[MathProblem],
        tokenizer: ITokenizer,
        device: torch.device,
        *,
        block_size: int,
        precision: str = "fp32",
        batch_size: int = 128,
        max_new_tokens: int | None = None,
        operations: Sequence[str] | None = None,
    ) -> None:
        if not problems:
            raise ValueError("ExactMatchEvaluator needs at least one problem")
        if operations is not None and len(operations) != len(problems):
            raise ValueError("operations must name one operation per problem")
        self.problems = list(problems)
        # problem -> its operation, for the per-operation accuracies (equal problems agree)
        self.operation_of = dict(zip(self.problems, operations or (), strict=False))
        self.tokenizer = tokenizer
        self.device = device
        self.block_size = block_size
        self.precision = precision
        self.batch_size = batch_size
        separator = prompt_separator(tokenizer)
        self.encoded: list[_Encoded] = []
        self.unencodable: list[MathProblem] = []
        for problem in self.problems:
            question = try_encode(tokenizer, problem.question)
            answer = try_encode(tokenizer, problem.answer + "\n")
            if question is None or answer is None:
                self.unencodable.append(problem)
            else:
                self.encoded.append(_Encoded(problem, separator + question, answer))
        if self.unencodable:
            log.warning(
                "exact_match_unencodable",
                count=len(self.unencodable),
                example=self.unencodable[0].question,
                hint="the tokenizer cannot encode these problems (a char vocabulary without "
                "their characters?); they count as wrong. data.tokenizer.type: byte avoids it",
            )
        longest = max((len(e.answer) for e in self.encoded), default=1)
        self.max_new_tokens = max_new_tokens or longest + 1
        self.newline_ids = newline_ids(tokenizer)

    # -- generation --------------------------------------------------------------------------------

    def _generate(self, model: IModel, prompts: list[list[int]]) -> list[list[int]]:
        """Greedy continuations of equal-length prompts, each cut after its first newline."""
        ids = torch.tensor(prompts, dtype=torch.long, device=self.device)
        stop = torch.tensor(sorted(self.newline_ids), dtype=torch.long, device=self.device)
        done = torch.zeros(len(prompts), dtype=torch.bool, device=self.device)
        new: list[torch.Tensor] = []
        for _ in range(self.max_new_tokens):
            with autocast(self.precision, self.device):
                logits = model(ids[:, -self.block_size :])["logits"][:, -1, :]
            next_id = logits.float().argmax(dim=-1)
            new.append(next_id)
            ids = torch.cat([ids, next_id[:, None]], dim=1)
            done |= torch.isin(next_id, stop)
            if bool(done.all()):
                break
        rows: list[list[int]] = torch.stack(new, dim=1).tolist()
        out = []
        for row in rows:
            end = next((i for i, t in enumerate(row) if t in self.newline_ids), len(row) - 1)
            out.append(row[: end + 1])
        return out

    # -- teacher-forced loss on the answers --------------------------------------------------------

    def _answer_nats(self, model: IModel, items: list[_Encoded]) -> tuple[float, int]:
        """Summed nats and count of answer tokens; right padding is exact for a causal model."""
        total, count = 0.0, 0
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            x, y = teacher_forced_batch([(e.prompt, e.answer) for e in chunk], self.block_size)
            x, y = x.to(self.device), y.to(self.device)
            with autocast(self.precision, self.device):
                logits = model(x)["logits"]
            nats = F.cross_entropy(
                logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum"
            )
            total += float(nats)
            count += int((y != IGNORE).sum())
        return total, count

    # -- IEvaluator --------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, model: IModel) -> dict[str, float]:
        return self.tally(*self.run(model))

    @torch.no_grad()
    def run(
        self, model: IModel, problems: Collection[MathProblem] | None = None
    ) -> tuple[list[tuple[MathProblem, bool]], Losses]:
        """Right or wrong for each problem, and the summed answer nats and token counts
        (`val_loss`, `ood_loss`), of all problems or of those in `problems` only: two-pass
        inference scores each group of problems with its own weights, then tallies all
        results together (`tally`)."""
        encoded = self.encoded
        unencodable = self.unencodable
        if problems is not None:
            wanted = set(problems)
            encoded = [e for e in encoded if e.problem in wanted]
            unencodable = [p for p in unencodable if p in wanted]
        was_training = model.training
        model.train(False)
        try:
            right = [(problem, False) for problem in unencodable] + self._score(model, encoded)
            losses = {
                name: self._answer_nats(
                    model, [e for e in encoded if e.problem.in_distribution == wanted_split]
                )
                for name, wanted_split in (("val_loss", True), ("ood_loss", False))
            }
        finally:
            model.train(was_training)
        return right, losses

    def tally(
        self, right: Sequence[tuple[MathProblem, bool]], losses: Mapping[str, tuple[float, int]]
    ) -> dict[str, float]:
        """The metrics (see the class docstring) of scored problems and their answer nats."""
        # operations per (split, level): a level with several gets per-operation figures too
        mixed: dict[tuple[str, int], set[str]] = defaultdict(set)
        for problem, _ in right:
            if problem in self.operation_of:
                mixed[(problem.split, problem.level)].add(self.operation_of[problem])
        tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # name -> [right, total]
        for problem, ok in right:
            level = f"acc_{problem.split}_L{problem.level}"
            names = ["acc", f"acc_{problem.split}", level]
            if len(mixed[(problem.split, problem.level)]) > 1:
                names.append(f"{level}_{self.operation_of[problem]}")
            for name in names:
                tallies[name][0] += ok
                tallies[name][1] += 1
        metrics = {name: hits / total for name, (hits, total) in sorted(tallies.items())}
        for name, (nats, count) in losses.items():
            if count:
                metrics[name] = nats / count
        unencodable = set(self.unencodable)
        missing = sum(1 for problem, _ in right if problem in unencodable)
        if missing:
            metrics["unencodable"] = float(missing)
        return metrics

    def _score(self, model: IModel, items: list[_Encoded]) -> list[tuple[MathProblem, bool]]:
        by_length: dict[int, list[_Encoded]] = defaultdict(list)
        for item in items:
            by_length[len(item.prompt)].append(item)
        scored: list[tuple[MathProblem, bool]] = []
        for length in sorted(by_length):
            group = by_length[length]
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                outputs = self._generate(model, [item.prompt for item in chunk])
                scored += [
                    (item.problem, is_exact_answer(self.tokenizer, out, item.problem.answer))
                    for item, out in zip(chunk, outputs, strict=True)
                ]
        return scored


def build_exact_match_evaluator(
    cfg: ExactMatchEvaluatorConfig, ctx: EvaluatorContext
) -> ExactMatchEvaluator:
    """Generation batches are `cfg.batch_size` (the training batch size plays no part)."""
    return exact_match_evaluator(
        cfg,
        ctx.token_data.tokenizer,
        ctx.device,
        block_size=ctx.block_size,
        precision=ctx.precision,
    )


def exact_match_evaluator(
    cfg: ExactMatchEvaluatorConfig,
    tokenizer: ITokenizer,
    device: torch.device,
    *,
    block_size: int,
    precision: str,
) -> ExactMatchEvaluator:
    """The evaluator `cfg` describes, without the prepared data: what two-pass inference
    (`neat.dispatch`) builds beside a checkpoint's own tokenizer."""
    if cfg.source is None:
        raise ConfigError(
            "evaluation.type exact_match needs synthetic math problems: add a source of type "
            "synthetic_math to data.sources, or set evaluation.source"
        )
    labelled = labelled_problems(cfg.source, "test", cfg.num_problems)
    return ExactMatchEvaluator(
        [problem for problem, _ in labelled],
        tokenizer,
        device,
        block_size=block_size,
        precision=precision,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        operations=[operation for _, operation in labelled],
    )


register_component("evaluation", ExactMatchEvaluatorConfig, build_exact_match_evaluator)
