"""`metrics.jsonl`: one JSON object per line, the run's machine-readable record for plots."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Literal

import structlog

from neat.config import ComponentConfig, register_component
from neat.files import write_bytes_atomic
from neat.interfaces.contexts import MonitorContext
from neat.monitoring.disk import append_whole, disk_full_error, is_disk_full
from neat.monitoring.events import (
    CheckpointSaved,
    EvalCompleted,
    RunFinished,
    RunStarted,
    SampleGenerated,
    TrainMetrics,
)

__all__ = [
    "MetricsFileMonitor",
    "metrics_record",
    "read_metrics",
    "replaced_path",
    "trim_to_resume",
]

log = structlog.get_logger(__name__)


class MetricsFileMonitor:
    """Appends a line per train/eval/checkpoint/run event to `path`.

    Append mode, so a resumed run continues the same file; each line goes to the file in one
    write, so a crash keeps everything written. The file opens on the first record: building
    the monitor touches no disk. A run that resumes at step S first moves the rows an
    abandoned segment wrote after S to `metrics.replaced.jsonl` (`trim_to_resume`), so the
    file holds one row per step and event. A full disk ends the run with a `DiskFullError`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._failed = False

    @property
    def replaced_path(self) -> Path:
        return replaced_path(self.path)

    def on_event(self, event: object) -> None:
        if self._failed:
            return
        if isinstance(event, RunStarted):
            self.close()
            self._guard(lambda: trim_to_resume(self.path, event.start_step))
        record = metrics_record(event)
        if record is not None:
            self._guard(lambda: self._write(record))

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _guard(self, write: Callable[[], object]) -> None:
        try:
            write()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._failed = True  # later records would fail the same way
            self.close()
            raise disk_full_error(self.path, exc) from exc

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self._file = self._open()
        append_whole(self._file.fileno(), (json.dumps(record) + "\n").encode("utf-8"))

    def _open(self) -> BinaryIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+b", buffering=0)
        # A crash mid-write can leave a partial last line; end it so the next record stays whole.
        size = os.fstat(file.fileno()).st_size
        if size > 0 and os.pread(file.fileno(), 1, size - 1) != b"\n":
            os.write(file.fileno(), b"\n")
        return file


def replaced_path(path: Path) -> Path:
    """Where rows of abandoned segments go: `metrics.jsonl` -> `metrics.replaced.jsonl`."""
    return path.with_name(f"{path.stem}.replaced{path.suffix}")


def trim_to_resume(path: Path, start_step: int) -> int:
    """Move the rows that a run resuming at `start_step` replays out of `path`.

    The rows kept are those up to the `checkpoint` row of `start_step` (the state resumed
    from) and that segment's own end at that step; every later row came from a segment
    whose work was abandoned (a crash or an interruption after the checkpoint). Without such
    a row (a fresh start, or a checkpoint from elsewhere) rows after `start_step` go, and so
    does an earlier start at `start_step`. The replaced rows are appended, fsynced, to
    `metrics.replaced.jsonl` before `path` is rewritten atomically, so a crash in between
    leaves a row twice rather than nowhere. Returns how many rows moved.
    """
    if not path.is_file():
        return 0
    lines = path.read_bytes().splitlines(keepends=True)
    rows = [_parse(line) for line in lines]
    keep = _rows_to_keep(rows, start_step)
    if all(keep):
        return 0
    moved = [line for line, kept in zip(lines, keep, strict=True) if not kept]
    replaced = replaced_path(path)
    with replaced.open("ab") as out:
        out.writelines(line if line.endswith(b"\n") else line + b"\n" for line in moved)
        out.flush()
        os.fsync(out.fileno())
    write_bytes_atomic(path, b"".join(line for line, kept in zip(lines, keep, strict=True) if kept))
    log.info(
        "metrics_rows_replaced",
        path=str(path),
        resumed_at=start_step,
        rows=len(moved),
        kept_in=str(replaced),
    )
    return len(moved)


def _rows_to_keep(rows: list[dict[str, Any] | None], start: int) -> list[bool]:
    """For each row, whether it is part of the history a run resuming at `start` continues."""
    saved = [i for i, row in enumerate(rows) if _is(row, "checkpoint", start)]
    if not saved:
        return [row is not None and _before(row, start) for row in rows]
    cut = saved[-1] + 1
    while cut < len(rows) and _is(rows[cut], "run_end", start):
        cut += 1  # the end of the segment that saved the checkpoint, at its step
    return [i < cut for i in range(len(rows))]


def _is(row: dict[str, Any] | None, event: str, step: int) -> bool:
    return row is not None and row.get("event") == event and _step(row) == step


def _before(row: dict[str, Any], start: int) -> bool:
    step = _step(row)
    if step is None:
        return False
    return step < start or (step == start and row.get("event") != "run_start")


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _step(row: dict[str, Any]) -> int | None:
    step = row.get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


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
                **event.extra,
            }
        case EvalCompleted():
            record: dict[str, Any] = {"event": "eval", "step": event.step}
            record.update((k, v) for k, v in event.metrics.items() if k not in record)
            return record
        case CheckpointSaved():
            return {"event": "checkpoint", "step": event.step, "path": str(event.path)}
        case SampleGenerated():
            return {"event": "sample", "step": event.step, "text": event.text}
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


class MetricsFileMonitorConfig(ComponentConfig):
    """One JSON object per train and eval event in `<run>/metrics.jsonl`."""

    type: Literal["metrics"] = "metrics"


def build_metrics_monitor(cfg: MetricsFileMonitorConfig, ctx: MonitorContext) -> MetricsFileMonitor:
    return MetricsFileMonitor(ctx.run_dir / "metrics.jsonl")


register_component("monitor", MetricsFileMonitorConfig, build_metrics_monitor)
