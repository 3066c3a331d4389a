"""`monitoring.monitors: [..., report]`: report.html beside metrics.jsonl, redrawn after an
eval while training goes on, and a config naming it without `metrics` is one clear error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.errors import ConfigError
from neat.monitoring import (
    EvalCompleted,
    MetricsFileMonitor,
    RunStarted,
    StepCompleted,
    TrainMetrics,
)
from neat.monitoring.report_monitor import ReportMonitor

pytest.importorskip("matplotlib")


def test_a_run_with_the_report_monitor_leaves_a_report_of_the_finished_run(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["train", "-c", str(tiny_config), "--run-dir", str(run), "--set",
            "monitoring.monitors=[console, metrics, report]"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "status: completed" in page and "<img src='data:image/png;base64," in page
    assert (run / "report_plots" / "01-run-loss_step.png").is_file()


def _started(run: Path) -> RunStarted:
    return RunStarted(run_dir=run, config={}, start_step=0, max_steps=10, num_params=1,
                      device="cpu", tokens_per_step=8)  # fmt: skip


def test_the_report_is_redrawn_after_an_eval_before_the_run_ends(tmp_path: Path) -> None:
    metrics = MetricsFileMonitor(tmp_path / "metrics.jsonl")
    report = ReportMonitor(tmp_path)
    events: list[object] = [_started(tmp_path)]
    events += [
        TrainMetrics(
            step=s,
            loss=3.0 - s / 10,
            lr=1e-3,
            tokens_per_s=100.0,
            grad_norm=None,
            mfu=None,
            elapsed_s=float(s),
        )
        for s in (1, 2)
    ]
    events += [EvalCompleted(step=2, metrics={"val_loss": 2.9})]
    for event in events:
        metrics.on_event(event)
        report.on_event(event)
    assert not (tmp_path / "report.html").exists()  # not while the eval is being dispatched
    report.on_event(StepCompleted(step=3, tokens_seen=24))
    deadline = time.monotonic() + 30
    while not (tmp_path / "report.html").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "in progress at step 2 of 10" in page
    report.close()
    metrics.close()


def test_the_report_monitor_needs_the_metrics_monitor() -> None:
    with pytest.raises(ConfigError, match=r"'report' draws from metrics\.jsonl: list 'metrics'"):
        load_config(raw={"data": {"path": "x"}, "monitoring": {"monitors": ["console", "report"]}})
