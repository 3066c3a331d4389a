"""Format compliance and control cost of generated answers to double-integrator problems.

The five format checks are `neat.data.double_integrator.check_format`'s; the cost ratio
compares the applied controls' cost (`control_cost`) with the reference answer's, so 1 is
as good as the minimum-energy solution written to the same decimals.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, ValidationInfo, model_validator
from torch import nn

from neat.config import EvaluatorConfig, register_component
from neat.config.base import source_from_context
from neat.data.double_integrator import (
    CONTEXT_KEY,
    CONTROLS_CLOSE,
    ControlProblem,
    DoubleIntegratorSourceConfig,
    check_format,
    control_cost,
    problems,
)
from neat.data.synthetic_math.prompts import IGNORE, prompt_separator, try_encode
from neat.errors import ConfigError
from neat.evaluation.exact_match import teacher_forced_batch
from neat.evaluation.generation import iter_tokens
from neat.interfaces import ITokenizer
from neat.interfaces.contexts import EvaluatorContext

__all__ = [
    "SCORE_KEYS",
    "ControlFormatEvaluator",
    "ControlFormatEvaluatorConfig",
    "control_format_evaluator",
    "default_max_new_tokens",
    "generate_completions",
    "score_completions",
]

# What `score_completions` returns, in the order reports show it.
SCORE_KEYS = (
    "fmt_reasoning",
    "fmt_controls",
    "fmt_proper",
    "fmt_count",
    "fmt_bounds",
    "fmt_all",
    "parsed",
    "cost_ratio",
    "cost_ratio_median",
)
SPLIT_SUFFIX = {"test": "", "test_ood": "_ood"}
EvalSplit = Literal["test", "test_ood"]


def _test_only() -> list[EvalSplit]:
    return ["test"]


def score_completions(
    problems: Sequence[ControlProblem],
    completions: Sequence[str],
    cfg: DoubleIntegratorSourceConfig,
) -> dict[str, float]:
    """The fraction of problems passing each check (`fmt_*`), all five (`fmt_all`), whose
    controls parse (`parsed`), and for those the mean cost over the reference's mean cost
    (`cost_ratio`) and the median of the per-problem ratios (`cost_ratio_median`, the
    reference cost floored at 1e-6); NaN when none parse. A mean of per-problem ratios would
    be ruled by the few problems whose reference costs almost nothing (a start near rest at
    the origin), where any error is a ratio in the hundreds."""
    if len(problems) != len(completions) or not problems:
        raise ValueError(
            f"need one completion per problem, and some: {len(problems)} problems, "
            f"{len(completions)} completions"
        )
    passed: dict[str, int] = defaultdict(int)
    ratios: list[float] = []
    costs: list[tuple[float, float]] = []
    for problem, text in zip(problems, completions, strict=True):
        check = check_format(text, steps=cfg.steps, bound=cfg.bound)
        passed["fmt_reasoning"] += check.reasoning_tags
        passed["fmt_controls"] += check.control_tags
        passed["fmt_proper"] += check.proper_format
        passed["fmt_count"] += check.exact_count
        passed["fmt_bounds"] += check.within_bounds
        passed["fmt_all"] += check.all_ok
        if check.controls is not None:
            passed["parsed"] += 1
            cost = control_cost(
                problem.position,
                problem.velocity,
                check.controls,
                steps=cfg.steps,
                horizon=cfg.horizon,
                bound=cfg.bound,
            )
            ratios.append(cost / max(problem.optimal_cost, 1e-6))
            costs.append((cost, problem.optimal_cost))
    ratio_keys = ("cost_ratio", "cost_ratio_median")
    scores = {key: passed[key] / len(problems) for key in SCORE_KEYS if key not in ratio_keys}
    reference = sum(best for _, best in costs)
    scores["cost_ratio"] = sum(c for c, _ in costs) / max(reference, 1e-6) if costs else math.nan
    scores["cost_ratio_median"] = statistics.median(ratios) if ratios else math.nan
    return scores


def default_max_new_tokens(tokenizer: ITokenizer, problems: Sequence[ControlProblem]) -> int:
    """The longest reference answer's tokens + 8: room for a slightly longer answer."""
    lengths = [len(try_encode(tokenizer, p.answer) or p.answer) for p in problems]
    return max(lengths, default=0) + 8


def _cut(tokenizer: ITokenizer, row: list[int]) -> str:
    """The completion: through the newline after the controls block, or up to the first
    end-of-text token, whichever comes first; else all of it."""
    eot = tokenizer.eot_id
    text = tokenizer.decode(row[: row.index(eot)] if eot is not None and eot in row else row)
    closed = text.find(CONTROLS_CLOSE)
    newline = text.find("\n", closed) if closed >= 0 else -1
    return text[: newline + 1] if newline >= 0 else text


def generate_completions(
    model: nn.Module,
    tokenizer: ITokenizer,
    problems: Sequence[ControlProblem],
    *,
    max_new_tokens: int,
    block_size: int,
    batch_size: int,
    device: torch.device | str,
) -> list[str]:
    """Greedy completions of the problems' prompts (each after the document separator, as in
    training), batched over prompts of equal token length (exact: no padding, so no attention
    mask); a batch stops once every row has closed its controls block with a newline or
    emitted end-of-text. A prompt the tokenizer cannot encode gets the empty completion."""
    separator = prompt_separator(tokenizer)
    eot = tokenizer.eot_id
    groups: dict[int, list[tuple[int, list[int]]]] = defaultdict(list)
    for i, problem in enumerate(problems):
        ids = try_encode(tokenizer, problem.prompt)
        if ids is not None:
            groups[len(separator) + len(ids)].append((i, separator + ids))
    completions = [""] * len(problems)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for length in sorted(groups):
                group = groups[length]
                for start in range(0, len(group), batch_size):
                    chunk = group[start : start + batch_size]
                    prompts = torch.tensor([p for _, p in chunk], dtype=torch.long, device=device)
                    rows = _greedy(model, tokenizer, prompts, max_new_tokens, block_size, eot)
                    for (i, _), row in zip(chunk, rows, strict=True):
                        completions[i] = _cut(tokenizer, row)
    finally:
        model.train(was_training)
    return completions


def _greedy(
    model: nn.Module,
    tokenizer: ITokenizer,
    prompts: torch.Tensor,
    max_new_tokens: int,
    block_size: int,
    eot: int | None,
) -> list[list[int]]:
    """New ids per row, stopping early when every row is done (see `generate_completions`)."""
    rows: list[list[int]] = [[] for _ in range(prompts.shape[0])]
    texts = [""] * len(rows)  # decoded piece by piece: only to see where a row ends
    done = [False] * len(rows)
    for step in iter_tokens(
        model, prompts, max_new_tokens, block_size=block_size, temperature=0.0, cuda_graph=False
    ):
        for r, token in enumerate(step[:, 0].tolist()):
            rows[r].append(token)
            if done[r]:
                continue
            if token == eot:
                done[r] = True
                continue
            piece = tokenizer.decode([token])
            texts[r] += piece
            if "\n" in piece and CONTROLS_CLOSE in texts[r]:
                closed = texts[r].find(CONTROLS_CLOSE)
                done[r] = texts[r].find("\n", closed) >= 0
        if all(done):
            break
    return rows


class ControlFormatEvaluatorConfig(EvaluatorConfig):
    """Greedy answers to double-integrator problems, scored by format and control cost.

    Reports, for the test split, `fmt_reasoning`, `fmt_controls`, `fmt_proper`, `fmt_count`,
    `fmt_bounds`, `fmt_all`, `parsed`, `cost_ratio` and `cost_ratio_median`; the same with
    `_ood` for test_ood; `val_loss` (mean loss on the test split's reference answers' tokens,
    for best-checkpoint tracking).
    """

    type: Literal["control_format"] = "control_format"
    num_problems: PositiveInt = Field(default=50, description="problems per split")
    splits: list[EvalSplit] = Field(
        default_factory=_test_only, description="test and/or test_ood (needs source.test)"
    )
    max_new_tokens: PositiveInt | None = Field(
        default=None, description="default: the longest reference answer's tokens + 8"
    )
    batch_size: PositiveInt = Field(default=64, description="problems generated at once")
    source: DoubleIntegratorSourceConfig | None = Field(
        default=None, description="default: the first double_integrator source in data.sources"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_source(cls, raw: Any, info: ValidationInfo) -> Any:
        return source_from_context(raw, info, CONTEXT_KEY)

    @model_validator(mode="after")
    def _check_splits(self) -> ControlFormatEvaluatorConfig:
        if not self.splits:
            raise ValueError("splits must name test, test_ood or both")
        if "test_ood" in self.splits and self.source is not None and self.source.test is None:
            raise ValueError(
                "splits lists test_ood but the double_integrator source has no test section "
                "(data.sources[].test)"
            )
        return self


class ControlFormatEvaluator:
    """Implements IEvaluator: greedy answers to fixed problems of each split, scored by
    `score_completions`, plus `val_loss` on the test split's reference answers."""

    def __init__(
        self,
        cfg: ControlFormatEvaluatorConfig,
        source: DoubleIntegratorSourceConfig,
        tokenizer: ITokenizer,
        device: torch.device,
        *,
        block_size: int,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.tokenizer = tokenizer
        self.device = device
        self.block_size = block_size
        self.problems = {split: problems(source, split, cfg.num_problems) for split in cfg.splits}
        test = self.problems.get("test") or problems(source, "test", cfg.num_problems)
        separator = prompt_separator(tokenizer)
        self.pairs: list[tuple[list[int], list[int]]] = []
        for problem in test:
            prompt, answer = (
                try_encode(tokenizer, problem.prompt),
                try_encode(tokenizer, problem.answer),
            )
            if prompt is not None and answer is not None:
                self.pairs.append((separator + prompt, answer))
        drawn = [p for split_problems in self.problems.values() for p in split_problems]
        self.max_new_tokens = cfg.max_new_tokens or default_max_new_tokens(tokenizer, drawn)

    def _val_loss(self, model: nn.Module) -> float | None:
        total, count = 0.0, 0
        for start in range(0, len(self.pairs), self.cfg.batch_size):
            x, y = teacher_forced_batch(
                self.pairs[start : start + self.cfg.batch_size], self.block_size
            )
            x, y = x.to(self.device), y.to(self.device)
            logits = model(x)["logits"]
            total += float(
                F.cross_entropy(
                    logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum"
                )
            )
            count += int((y != IGNORE).sum())
        return total / count if count else None

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for split, drawn in self.problems.items():
            completions = generate_completions(
                model,
                self.tokenizer,
                drawn,
                max_new_tokens=self.max_new_tokens,
                block_size=self.block_size,
                batch_size=self.cfg.batch_size,
                device=self.device,
            )
            for key, value in score_completions(drawn, completions, self.source).items():
                if math.isfinite(value):  # no cost ratio when nothing parsed
                    metrics[key + SPLIT_SUFFIX[split]] = value
        was_training = model.training
        model.eval()
        try:
            loss = self._val_loss(model)
        finally:
            model.train(was_training)
        if loss is not None:
            metrics["val_loss"] = loss
        return metrics


def control_format_evaluator(
    cfg: ControlFormatEvaluatorConfig,
    tokenizer: ITokenizer,
    device: torch.device,
    *,
    block_size: int,
) -> ControlFormatEvaluator:
    """The evaluator `cfg` describes, beside any tokenizer (a checkpoint's own)."""
    if cfg.source is None:
        raise ConfigError(
            "evaluation.type control_format needs double-integrator problems: add a source of "
            "type double_integrator to data.sources, or set evaluation.source"
        )
    return ControlFormatEvaluator(cfg, cfg.source, tokenizer, device, block_size=block_size)


def build_control_format_evaluator(
    cfg: ControlFormatEvaluatorConfig, ctx: EvaluatorContext
) -> ControlFormatEvaluator:
    """Generation batches are `cfg.batch_size` (the training batch size plays no part)."""
    return control_format_evaluator(
        cfg, ctx.token_data.tokenizer, ctx.device, block_size=ctx.block_size
    )


register_component("evaluation", ControlFormatEvaluatorConfig, build_control_format_evaluator)
