"""`neat quick-test`: does this config train? A few steps in a scratch folder, with an
evaluation and a checkpoint at the last step, a short report, and nothing left behind."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from neat.cli.common import config_options, user_errors

if TYPE_CHECKING:
    from neat.config import ExperimentConfig

__all__ = ["DEFAULT_STEPS", "quick_overrides", "quick_test"]

DEFAULT_STEPS = 5
# Evaluation cost knobs, by field name, and the most a quick test spends on each: only the
# ones the config's evaluator type has are set (`batches` of `lm`, `num_problems` of the
# generating evaluators), and never above what the config asks.
_EVAL_COST = {"batches": 2, "num_problems": 8}


def quick_overrides(config: ExperimentConfig, steps: int) -> list[str]:
    """--set assignments that make CONFIG a STEPS-step run, logging every step, evaluating
    and checkpointing at the last, its evaluation shrunk where the evaluator has a knob."""
    out = [
        f"training.max_steps={steps}",
        f"evaluation.interval={steps}",
        f"checkpoint.interval={steps}",
        "monitoring.log_interval=1",
    ]
    evaluation = config.evaluation
    for name, cap in _EVAL_COST.items():
        if name not in type(evaluation).model_fields:
            continue
        current = getattr(evaluation, name)
        value = cap if not isinstance(current, int) else min(current, cap)
        out.append(f"evaluation.{name}={value}")
    return out


@dataclass
class _Seen:
    """What the trainer published, for the report."""

    params: int | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    status: str | None = None
    step: int = 0

    def on_event(self, event: object) -> None:
        from neat.monitoring.events import (
            CheckpointSaved,
            EvalCompleted,
            RunFinished,
            RunStarted,
            TrainMetrics,
        )

        if isinstance(event, RunStarted):
            self.params = event.num_params
        elif isinstance(event, TrainMetrics):
            self.losses.append((event.step, event.loss))
        elif isinstance(event, EvalCompleted):
            self.evals.append((event.step, dict(event.metrics)))
        elif isinstance(event, CheckpointSaved):
            self.checkpoints.append(event.step)
        elif isinstance(event, RunFinished):
            self.status, self.step = event.status, event.step


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown(v)}" for k, v in value.items())
    return str(value)


@click.command("quick-test")
@config_options
@click.option(
    "--steps",
    default=DEFAULT_STEPS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training steps; the evaluation and the checkpoint come at the last one.",
)
@click.pass_context
@user_errors
def quick_test(
    ctx: click.Context, config_path: Path, overrides: tuple[str, ...], steps: int
) -> None:
    """Train CONFIG for a few steps in a scratch folder, with an evaluation and a checkpoint
    at the last step; report the losses, the eval metrics, the time and the parameter count,
    then delete the folder. Exit 0 when it all worked."""
    from neat.config import load_config
    from neat.di import build_container

    started = time.perf_counter()
    config = load_config(config_path, overrides)  # the user's typos are named here
    config = load_config(config_path, [*overrides, *quick_overrides(config, steps)])
    seen = _Seen()
    scratch = Path(tempfile.mkdtemp(prefix="neat-quick-test-"))
    try:
        # registry.sqlite goes next to the run directory: inside the scratch folder too
        container = build_container(config, run_dir=scratch / "run", console=ctx.obj["console"])
        unsubscribe = container.event_bus().subscribe(seen.on_event)
        try:
            container.trainer().fit()
        finally:
            unsubscribe()
        is_main = container.dist().is_main
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not is_main:  # under torchrun, rank 0 reports
        return
    _report(config_path, seen, steps, time.perf_counter() - started)


def _report(config_path: Path, seen: _Seen, steps: int, seconds: float) -> None:
    problems = []
    if seen.status not in (None, "completed"):
        problems.append(f"the run ended {seen.status}")
    if seen.step != steps:
        problems.append(f"it stopped at step {seen.step} of {steps}")
    if not seen.losses:
        problems.append("no training loss was logged")
    if not any(step == seen.step for step, _ in seen.evals):
        problems.append("no evaluation ran at the last step")
    if not any(step == seen.step for step in seen.checkpoints):
        problems.append("no checkpoint was saved at the last step")
    verdict = "OK" if not problems else "FAILED"
    click.echo(f"{verdict}: quick test of {config_path}")
    click.echo(f"  steps       {seen.step}/{steps}")
    if seen.losses:
        (first_step, first), (last_step, last) = seen.losses[0], seen.losses[-1]
        click.echo(
            f"  loss        {first:.4f} (step {first_step}) -> {last:.4f} (step {last_step})"
        )
    if seen.evals:
        eval_step, metrics = seen.evals[-1]
        shown = ", ".join(f"{k}={_shown(v)}" for k, v in metrics.items()) or "(no metrics)"
        click.echo(f"  eval        {shown} (step {eval_step})")
    if seen.checkpoints:
        click.echo(f"  checkpoint  saved at step {seen.checkpoints[-1]} (deleted with the folder)")
    click.echo(f"  seconds     {seconds:.1f}")
    if seen.params is not None:
        click.echo(f"  parameters  {seen.params:,}")
    if problems:
        for problem in problems:
            click.echo(f"  problem     {problem}", err=True)
        raise SystemExit(1)
