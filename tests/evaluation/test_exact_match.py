"""The exact-match evaluator: an oracle scores 100%, a constant answer scores what it should,
batching changes nothing, and it runs inside a real training loop."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from neat.config import build, load_config
from neat.data import CharTokenizer
from neat.data.synthetic_math import (
    MathProblem,
    SyntheticMathSourceConfig,
    labelled_problems,
    problems,
)
from neat.di import build_container
from neat.errors import ConfigError
from neat.evaluation.exact_match import ExactMatchEvaluator, ExactMatchEvaluatorConfig
from neat.interfaces import IEvaluator
from neat.interfaces.contexts import EvaluatorContext
from neat.models import GPT
from neat.models.gpt import GPTConfig

CPU = torch.device("cpu")
SOURCE = SyntheticMathSourceConfig(
    levels=[1], operations=["add", "sub"], num_train=200, test={"levels": [2]}
)


def tokenizer_for(items: list[MathProblem], extra: str = "") -> CharTokenizer:
    return CharTokenizer.fit([p.question + p.answer + "\n" for p in items] + [extra])


class Oracle(nn.Module):
    """Reads the current line back as text and puts all mass on the next character of the
    problem it belongs to: exactly right answers (a char-tokenizer model, for tests)."""

    def __init__(self, items: list[MathProblem], tokenizer: CharTokenizer) -> None:
        super().__init__()
        self.full = [p.question + p.answer + "\n" for p in items]
        self.tokenizer = tokenizer
        self.anchor = nn.Parameter(torch.zeros(()))

    def _next(self, line: str) -> int | None:
        for full in self.full:
            if full.startswith(line) and len(line) < len(full):
                return self.tokenizer.encode(full[len(line)])[0]
        return None

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        b, t = input_ids.shape
        logits = torch.zeros(b, t, self.tokenizer.vocab_size) + self.anchor
        for i, row in enumerate(input_ids.tolist()):
            for j in range(t):
                line = self.tokenizer.decode(row[: j + 1]).split("\n")[-1]
                nxt = self._next(line) if line else None
                if nxt is not None:
                    logits[i, j, nxt] = 30.0
        return {"logits": logits, "loss": None}


class AlwaysZero(nn.Module):
    """Answers "0\\n" to everything: "0" after anything but "0", then a newline."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        super().__init__()
        self.zero, self.newline = tokenizer.encode("0")[0], tokenizer.encode("\n")[0]
        self.vocab = tokenizer.vocab_size
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        logits = torch.zeros(*input_ids.shape, self.vocab) + self.anchor
        after_zero = input_ids == self.zero
        logits[..., self.zero] = torch.where(after_zero, 0.0, 10.0)
        logits[..., self.newline] = torch.where(after_zero, 10.0, 0.0)
        return {"logits": logits, "loss": None}


def labelled(n: int = 40) -> tuple[list[MathProblem], list[str]]:
    pairs = labelled_problems(SOURCE, "test", n)
    return [p for p, _ in pairs], [op for _, op in pairs]


def test_oracle_scores_everything_right_with_near_zero_loss() -> None:
    items, ops = labelled()
    tokenizer = tokenizer_for(items)
    evaluator = ExactMatchEvaluator(items, tokenizer, CPU, block_size=16, operations=ops)
    assert isinstance(evaluator, IEvaluator)
    metrics = evaluator.evaluate(Oracle(items, tokenizer))
    for name in ("acc", "acc_id", "acc_heldout", "acc_ood", "acc_id_L1", "acc_ood_L2"):
        assert metrics[name] == 1.0, name
    assert metrics["acc_heldout_L1_add"] == metrics["acc_heldout_L1_sub"] == 1.0
    assert metrics["val_loss"] < 1e-6 and metrics["ood_loss"] < 1e-6
    assert "unencodable" not in metrics


def test_always_zero_scores_the_share_of_zero_answers() -> None:
    items, ops = labelled(200)
    tokenizer = tokenizer_for(items)
    metrics = ExactMatchEvaluator(items, tokenizer, CPU, block_size=16, operations=ops).evaluate(
        AlwaysZero(tokenizer)
    )
    for split in ("id", "heldout"):
        drawn = [p for p in items if p.split == split]
        zeros = sum(p.answer == "0" for p in drawn)
        assert 0 < zeros < len(drawn)  # level-1 subtraction has a - a = 0
        assert metrics[f"acc_{split}"] == pytest.approx(zeros / len(drawn))
    assert metrics["acc_ood"] == 0.0  # two-digit sums are never 0
    assert metrics["acc"] == pytest.approx(sum(p.answer == "0" for p in items) / len(items))
    adds = [p for p, op in zip(items, ops, strict=True) if p.split == "id" and op == "add"]
    assert metrics["acc_id_L1_add"] == pytest.approx(sum(p.answer == "0" for p in adds) / len(adds))
    # teacher-forced loss is finite and large: the model is confidently wrong
    assert math.isfinite(metrics["val_loss"]) and metrics["val_loss"] > 1.0


def test_an_answer_must_end_with_a_newline() -> None:
    item = MathProblem("3-3=", "0", 1, "id")
    tokenizer = tokenizer_for([item])

    class ZeroForever(AlwaysZero):
        def forward(
            self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
        ) -> dict[str, torch.Tensor | None]:
            logits = torch.zeros(*input_ids.shape, self.vocab) + self.anchor
            logits[..., self.zero] = 10.0
            return {"logits": logits, "loss": None}

    stops = ExactMatchEvaluator([item], tokenizer, CPU, block_size=8)
    assert stops.evaluate(AlwaysZero(tokenizer))["acc"] == 1.0
    runs_on = ExactMatchEvaluator([item], tokenizer, CPU, block_size=8, max_new_tokens=4)
    assert runs_on.evaluate(ZeroForever(tokenizer))["acc"] == 0.0  # "0000": no newline


def test_batching_and_length_grouping_do_not_change_the_result() -> None:
    items, ops = labelled(30)
    tokenizer = tokenizer_for(items)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16), tokenizer.vocab_size)
    model.train()
    one = ExactMatchEvaluator(items, tokenizer, CPU, block_size=16, batch_size=1, operations=ops)
    many = ExactMatchEvaluator(items, tokenizer, CPU, block_size=16, batch_size=64, operations=ops)
    first = one.evaluate(model)
    assert model.training  # restored
    second = many.evaluate(model)
    assert first.keys() == second.keys()
    for key in first:
        assert first[key] == pytest.approx(second[key], rel=1e-5), key
    assert many.evaluate(model) == second  # the same problems every call


def test_unencodable_problems_count_as_wrong() -> None:
    source = SyntheticMathSourceConfig(levels=[1], test={"formats": ["words"]})
    items = problems(source, "test", 20)
    tokenizer = tokenizer_for([p for p in items if p.in_distribution])  # no letters
    evaluator = ExactMatchEvaluator(items, tokenizer, CPU, block_size=32)
    metrics = evaluator.evaluate(Oracle(items, tokenizer))
    assert metrics["unencodable"] == 20.0
    assert metrics["acc_id"] == 1.0 and metrics["acc_ood"] == 0.0
    assert "ood_loss" not in metrics


def test_builder_reads_the_source_and_needs_one() -> None:
    cfg = ExactMatchEvaluatorConfig(source=SOURCE, num_problems=6, batch_size=4)
    items = problems(SOURCE, "test", 6)
    token_data = SimpleNamespace(tokenizer=tokenizer_for(items))
    ctx = EvaluatorContext(
        token_data=token_data,  # type: ignore[arg-type]  (only its tokenizer is read)
        block_size=16,
        batch_size=2,
        device=CPU,
        precision="fp32",
    )
    evaluator = build("evaluation", cfg, ctx)
    assert isinstance(evaluator, ExactMatchEvaluator)
    assert evaluator.problems == items and evaluator.batch_size == 4
    with pytest.raises(ConfigError, match="synthetic_math"):
        build("evaluation", ExactMatchEvaluatorConfig(), ctx)


def test_trains_and_evaluates_end_to_end(tmp_path: Path) -> None:
    config = load_config(
        raw={
            "name": "math-test",
            "model": {"type": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
            "data": {
                "type": "synthetic_math",
                "levels": [1],
                "operations": ["add"],
                "num_train": 400,
                "test": {"levels": [2]},
                "format": "prompt_response",
                "cache_dir": str(tmp_path / "cache"),
            },
            "optimization": {"lr": 3e-3, "warmup_steps": 2},
            "training": {"max_steps": 10, "batch_size": 8, "device": "cpu"},
            "evaluation": {"type": "exact_match", "interval": 5, "num_problems": 10},
            "monitoring": {"log_interval": 5, "monitors": ["metrics"]},
            "checkpoint": {"interval": 100, "save_final": False},
        }
    )
    container = build_container(config, run_dir=tmp_path / "run")
    state = container.trainer().fit()
    assert state.step == 10
    assert state.best_val_loss is not None and math.isfinite(state.best_val_loss)
    assert {"acc_id", "acc_ood", "acc_id_L1", "acc_ood_L2"} <= set(state.metrics)
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count('"acc_id"') == 2
