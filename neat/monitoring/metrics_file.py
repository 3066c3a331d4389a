"""`metrics.jsonl`: one JSON object per line, the run's machine-readable record for plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import structlog

from neat.monitoring.events import (
    CheckpointSaved,
    EvalCompleted,
    RunFinished,
    RunStarted,
    TrainMetrics,
)

__all__ = ["MetricsFileMonitor", "metrics_record", "read_metrics"]

log = structlog.get_logger(__name__)


class MetricsFileMonitor:
    """Appends a line per train/eval/checkpoint/run event to `path`.

    Append mode, so a resumed run continues the same file; flushed per line, so a crash keeps
    everything written. The file opens on the first record: building the monitor touches no disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def on_event(self, event: object) -> None:
        record = metrics_record(event)
        if record is not None:
            self._write(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self._file = self._open()
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A crash mid-write can leave a partial last line; end it so the next record stays whole.
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as existing:
                existing.seek(-1, 2)
                needs_newline = existing.read(1) != b"\n"
        file = self.path.open("a", buffering=1, encoding="utf-8")
        if needs_newline:
            file.write("\n")
        return file


def metrics_record(event: object) -> dict[str, Any] | None:
    """The `metrics.jsonl` line for `event`, or None for events not recorded (StepCompleted)."""
    match event:
        case TrainMetrics():
            return {
                "event": "train",
                "step": event.step,
                "loss": event.loss,
                "lr": event.lr,
                "tokens_per_s": event.tokens_per_s,
                "grad_norm": event.grad_norm,
                "mfu": event.mfu,
                "elapsed_s": event.elapsed_s,
            }
        case EvalCompleted():
            record: dict[str, Any] = {"event": "eval", "step": event.step}
            record.update((k, v) for k, v in event.metrics.items() if k not in record)
            return record
        case CheckpointSaved():
            return {"event": "checkpoint", "step": event.step, "path": str(event.path)}
        case RunStarted():
            return {
                "event": "run_start",
                "step": event.start_step,
                "max_steps": event.max_steps,
                "num_params": event.num_params,
                "device": event.device,
                "tokens_per_step": event.tokens_per_step,
            }
        case RunFinished():
            return {
                "event": "run_end",
                "step": event.step,
                "status": event.status,
                "elapsed_s": event.elapsed_s,
                "best_val_loss": event.best_val_loss,
            }
    return None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a `metrics.jsonl`, in order.

    A line cut short by a crash is skipped with a warning rather than failing the whole read.
    """
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("metrics_line_unreadable", path=str(path), line=number)
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                log.warning("metrics_line_not_an_object", path=str(path), line=number)
    return records
