"""`evaluation.early_stopping` and `checkpoint.keep_best`: stopping at the right step on a
scripted metric, keeping the best checkpoint past retention, and counting patience across a
resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.config import EvaluatorConfig, register_component
from neat.config.base import EarlyStoppingConfig
from neat.errors import ConfigError
from neat.training.early_stopping import BestTracker
from tests.conftest import TINY_CONFIG


def test_the_tracker_stops_after_patience_evaluations_without_a_real_improvement() -> None:
    tracker = BestTracker.from_config(EarlyStoppingConfig(patience=2, min_delta=0.01))
    seen = []
    for step, value in enumerate([3.0, 2.5, 2.495, 2.6, 2.48, 2.485, 2.49], start=1):
        improved = tracker.update(step, {"val_loss": value})
        seen.append((improved, tracker.should_stop))
    assert seen == [
        (True, False),
        (True, False),
        (False, False),  # 0.005 better: below min_delta
        (False, True),
        (True, False),  # 2.48 < 2.5 - 0.01
        (False, False),
        (False, True),
    ]
    assert tracker.best == 2.48 and tracker.best_step == 5


def test_max_mode_and_an_unknown_metric() -> None:
    tracker = BestTracker.from_config(EarlyStoppingConfig(metric="acc", mode="max", patience=1))
    assert tracker.update(1, {"acc": 0.5}) and not tracker.update(2, {"acc": 0.5})
    assert tracker.should_stop
    with pytest.raises(ConfigError, match=r"\(it reports val_loss\): name one of those"):
        tracker.update(3, {"val_loss": 1.0})


class ScriptedEvaluatorConfig(EvaluatorConfig):
    """Reports `values[start + i]` as val_loss at its i-th call: a metric the test decides."""

    type: Literal["scripted"] = "scripted"
    values: list[float]
    start: int = 0


class _Scripted:
    def __init__(self, cfg: ScriptedEvaluatorConfig) -> None:
        self.values = cfg.values[cfg.start :]

    def evaluate(self, model: Any) -> dict[str, float]:
        return {"val_loss": self.values.pop(0)}


@pytest.fixture
def scripted() -> None:
    register_component("evaluation", ScriptedEvaluatorConfig, lambda cfg, ctx: _Scripted(cfg))


# evaluations every 2 steps: 3.0 (step 2), 2.0 (4, best), 2.5 (6), 2.2 (8), 2.1 (10): stop at 10
SCRIPT = "[3.0, 2.0, 2.5, 2.2, 2.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]"
SETTINGS = [
    f"evaluation={{type: scripted, interval: 2, values: {SCRIPT}, "
    "early_stopping: {patience: 3}}",
    "checkpoint={interval: 100, keep_last: 1, keep_best: true}",
]


def _train(config: Path, run: Path, *sets: str, resume: bool = False) -> str:
    args = ["train", "-c", str(config), "--run-dir", str(run)]
    args += ["--resume", "auto"] if resume else []
    for item in [*SETTINGS, *sets]:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_stops_early_saves_and_keeps_the_best_checkpoint(
    scripted: None, corpus: Path, tmp_path: Path
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(max_steps=30), encoding="utf-8")
    run = tmp_path / "run"
    output = _train(config, run)
    assert "early stopping at step 10" in output and "the best checkpoint is step_4" in output
    end = [r for r in _rows(run) if r["event"] == "run_end"][-1]
    assert end["status"] == "stopped_early" and end["step"] == 10
    # keep_last: 1 keeps the newest (the stop) and keep_best the best, nothing else
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_10", "step_4"]
    state = json.loads((run / "checkpoints" / "step_10" / "state.json").read_text())
    assert state["tracker"] == {
        "best": 2.0,
        "best_step": 4,
        "bad_evals": 3,
        "best_checkpoint": "step_4",
    }


def test_a_resumed_run_counts_patience_from_where_it_stopped(
    scripted: None, corpus: Path, tmp_path: Path
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(max_steps=30), encoding="utf-8")
    run = tmp_path / "run"
    _train(config, run, "training.max_steps=6")  # evaluations at 2, 4, 6: one bad so far
    output = _train(config, run, "evaluation.start=3", resume=True)
    assert "early stopping at step 10" in output
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_10", "step_4"]
