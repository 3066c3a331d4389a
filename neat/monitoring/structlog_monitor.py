"""Training events as structured log entries, so they land in the run's `log.jsonl` too."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import structlog

from neat.config import ComponentConfig, register_component
from neat.interfaces.contexts import MonitorContext
from neat.monitoring.events import (
    CheckpointSaved,
    EvalCompleted,
    RunFinished,
    RunStarted,
    SampleGenerated,
    TrainMetrics,
)
from neat.monitoring.logs import TRAIN_LOGGER, add_json_log_file

__all__ = ["StructlogMonitor"]

# Failures and interruptions should stand out among the info lines.
_FINISH_LEVELS = {"interrupted": logging.WARNING, "failed": logging.ERROR}


class StructlogMonitor:
    """Logs every event except StepCompleted (too frequent) through the `neat.train` logger.

    Entry names match the `event` values of `metrics.jsonl`: run_start, train, eval,
    checkpoint, run_end. The resolved config is left out: the run saves it as config.yaml.
    """

    def __init__(self, log_file: Path | None = None) -> None:
        self.log = structlog.get_logger(TRAIN_LOGGER)
        self._detach = add_json_log_file(log_file) if log_file is not None else None

    def on_event(self, event: object) -> None:
        match event:
            case TrainMetrics():
                self.log.info(
                    "train",
                    step=event.step,
                    loss=event.loss,
                    lr=event.lr,
                    tokens_per_s=event.tokens_per_s,
                    grad_norm=event.grad_norm,
                    mfu=event.mfu,
                    elapsed_s=event.elapsed_s,
                )
            case EvalCompleted():
                metrics = {k: v for k, v in event.metrics.items() if k not in ("event", "step")}
                self.log.info("eval", step=event.step, **metrics)
            case CheckpointSaved():
                self.log.info("checkpoint", step=event.step, path=str(event.path))
            case SampleGenerated():
                self.log.info("sample", step=event.step, text=event.text)
            case RunStarted():
                self.log.info(
                    "run_start",
                    run_dir=str(event.run_dir),
                    step=event.start_step,
                    max_steps=event.max_steps,
                    num_params=event.num_params,
                    device=event.device,
                    tokens_per_step=event.tokens_per_step,
                )
            case RunFinished():
                self.log.log(
                    _FINISH_LEVELS.get(event.status, logging.INFO),
                    "run_end",
                    step=event.step,
                    status=event.status,
                    elapsed_s=event.elapsed_s,
                    best_val_loss=event.best_val_loss,
                )

    def close(self) -> None:
        """Stop writing the run's log file (other handlers belong to `configure_logging`)."""
        if self._detach is not None:
            self._detach()
            self._detach = None


class StructlogMonitorConfig(ComponentConfig):
    """Structured JSON log lines in `<run>/log.jsonl`."""

    type: Literal["structlog"] = "structlog"


def build_structlog_monitor(cfg: StructlogMonitorConfig, ctx: MonitorContext) -> StructlogMonitor:
    return StructlogMonitor(ctx.run_dir / "log.jsonl")


register_component("monitor", StructlogMonitorConfig, build_structlog_monitor)
