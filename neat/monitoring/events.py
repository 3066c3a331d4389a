"""Typed events the trainer publishes. Cheap records: expensive work happens in subscribers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_dir: Path
    config: dict[str, Any]
    start_step: int
    max_steps: int
    num_params: int
    device: str
    tokens_per_step: int


@dataclass(frozen=True, slots=True)
class StepCompleted:
    """Published after every optimizer step; `step` counts completed steps (1-based)."""

    step: int
    tokens_seen: int


@dataclass(frozen=True, slots=True)
class TrainMetrics:
    """Published every `monitoring.log_interval` steps, the only place the loop syncs."""

    step: int
    loss: float
    lr: float
    tokens_per_s: float
    grad_norm: float | None
    mfu: float | None
    elapsed_s: float
    extra: dict[str, float] = field(default_factory=dict)  # the objective's (e.g. reward)


@dataclass(frozen=True, slots=True)
class EvalCompleted:
    step: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class SampleGenerated:
    """`evaluation.sample`: the prompt and its continuation, after the eval of `step`."""

    step: int
    text: str


@dataclass(frozen=True, slots=True)
class CheckpointSaved:
    step: int
    path: Path


@dataclass(frozen=True, slots=True)
class RunFinished:
    """`status` is "completed", "interrupted" or "failed"."""

    step: int
    status: str
    elapsed_s: float
    best_val_loss: float | None
