"""Exact-match accuracy of greedy answers: in the training distribution, on problems held out
of it, and out of it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, ValidationInfo, model_validator

from neat.config import EvaluatorConfig, register_component
from neat.data.synthetic_math import MathProblem, SyntheticMathSourceConfig, labelled_problems
from neat.data.synthetic_math.spec import CONTEXT_KEY
from neat.errors import ConfigError, NeatError
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
        """Fill `source` with the config's own synthetic_math source (validated before us, as
        `data` comes before `evaluation`), so the saved config names it in full."""
        if not isinstance(raw, dict) or raw.get("source") is not None:
            return raw
        noted = info.context.get(CONTEXT_KEY) if isinstance(info.context, dict) else None
        if noted:
            return {**raw, "source": noted[0]}
        return raw


IGNORE = -100


@dataclass(frozen=True)
class _Encoded:
    problem: MathProblem
    prompt: list[int]  # separator + question
    answer: list[int]  # answer + newline


def _newline_ids(tokenizer: ITokenizer) -> set[int]:
    """Ids whose text contains a newline: generating one ends the answer."""
    found = set()
    for i in range(tokenizer.vocab_size):
        try:
            if "\n" in tokenizer.decode([i]):
                found.add(i)
        except (ValueError, KeyError, IndexError):
            continue
    return found


def _try_encode(tokenizer: ITokenizer, text: str) -> list[int] | None:
    try:
        return tokenizer.encode(text)
    except (NeatError, ValueError, KeyError):  # e.g. a character the char vocab never saw
        return None


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
        eot = tokenizer.eot_id
        separator = [eot] if eot is not None else (_try_encode(tokenizer, "\n") or [])
        self.encoded: list[_Encoded] = []
        self.unencodable: list[MathProblem] = []
        for problem in self.problems:
            question = _try_encode(tokenizer, problem.question)
            answer = _try_encode(tokenizer, problem.answer + "\n")
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
        self.newline_ids = _newline_ids(tokenizer)

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

    def _is_right(self, generated: list[int], answer: str) -> bool:
        try:
            text = self.tokenizer.decode(generated)
        except (ValueError, KeyError, IndexError):
            return False
        head, newline, _ = text.partition("\n")
        return bool(newline) and head == answer

    # -- teacher-forced loss on the answers --------------------------------------------------------

    def _answer_nats(self, model: IModel, items: list[_Encoded]) -> tuple[float, int]:
        """Summed nats and count of answer tokens; right padding is exact for a causal model."""
        total, count = 0.0, 0
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            rows, targets = [], []
            for item in chunk:
                seq = item.prompt + item.answer
                inputs, labels = seq[:-1], [IGNORE] * (len(item.prompt) - 1) + item.answer
                rows.append(inputs[-self.block_size :])
                targets.append(labels[-self.block_size :])
            width = max(len(r) for r in rows)
            x = torch.zeros(len(rows), width, dtype=torch.long)
            y = torch.full((len(rows), width), IGNORE, dtype=torch.long)
            for i, (r, t) in enumerate(zip(rows, targets, strict=True)):
                x[i, : len(r)] = torch.tensor(r)
                y[i, : len(t)] = torch.tensor(t)
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
        was_training = model.training
        model.train(False)
        try:
            right = self._score(model)
            losses = {
                name: self._answer_nats(
                    model, [e for e in self.encoded if e.problem.in_distribution == wanted]
                )
                for name, wanted in (("val_loss", True), ("ood_loss", False))
            }
        finally:
            model.train(was_training)
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
        if self.unencodable:
            metrics["unencodable"] = float(len(self.unencodable))
        return metrics

    def _score(self, model: IModel) -> list[tuple[MathProblem, bool]]:
        by_length: dict[int, list[_Encoded]] = defaultdict(list)
        for item in self.encoded:
            by_length[len(item.prompt)].append(item)
        scored = [(problem, False) for problem in self.unencodable]
        for length in sorted(by_length):
            group = by_length[length]
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                outputs = self._generate(model, [item.prompt for item in chunk])
                scored += [
                    (item.problem, self._is_right(out, item.problem.answer))
                    for item, out in zip(chunk, outputs, strict=True)
                ]
        return scored


def build_exact_match_evaluator(
    cfg: ExactMatchEvaluatorConfig, ctx: EvaluatorContext
) -> ExactMatchEvaluator:
    """Generation batches are `cfg.batch_size` (the training batch size plays no part)."""
    if cfg.source is None:
        raise ConfigError(
            "evaluation.type exact_match needs synthetic math problems: add a source of type "
            "synthetic_math to data.sources, or set evaluation.source"
        )
    labelled = labelled_problems(cfg.source, "test", cfg.num_problems)
    return ExactMatchEvaluator(
        [problem for problem, _ in labelled],
        ctx.token_data.tokenizer,
        ctx.device,
        block_size=ctx.block_size,
        precision=ctx.precision,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        operations=[operation for _, operation in labelled],
    )


register_component("evaluation", ExactMatchEvaluatorConfig, build_exact_match_evaluator)
