"""Records every run in the runs folder's registry (`neat runs list` reads it).

The registry is a convenience beside the run directory: a registry that cannot be written
(locked for too long, corrupt, read-only) costs a warning, never the run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from neat.monitoring.events import EvalCompleted, RunFinished, RunStarted, TrainMetrics
from neat.persistence.registry import (
    RunRecord,
    record_end,
    record_progress,
    record_start,
    registry_path,
    utc_now,
)

__all__ = ["RegistryMonitor", "config_hash", "git_commit"]

log = structlog.get_logger(__name__)

GIT_TIMEOUT_S = 2.0


class RegistryMonitor:
    """Upserts the run's row at start, its step and metrics at each eval (not every step:
    a write per step would cost more than the step on a small model), and its status and
    end time at finish. After one failed write it stops trying, so a locked registry does
    not stall every eval by the busy timeout."""

    def __init__(self, run_dir: Path, db: Path | None = None) -> None:
        self.run_dir = run_dir
        self._db = db
        self._metrics: dict[str, Any] = {}
        self._failed = False

    @property
    def db(self) -> Path:
        return self._db or registry_path(self.run_dir)

    @property
    def _key(self) -> str:
        return str(self.run_dir.resolve())

    def on_event(self, event: object) -> None:
        match event:
            case RunStarted():
                self._failed = False
                self._metrics = {}
                self._guard(lambda: record_start(self.db, _start_row(event, self._key)))
            case TrainMetrics():
                self._metrics["loss"] = event.loss  # kept in memory, written with the eval
            case EvalCompleted():
                self._metrics.update(event.metrics)
                self._guard(lambda: record_progress(self.db, self._key, event.step, self._metrics))
            case RunFinished():
                if event.best_val_loss is not None:
                    self._metrics["best_val_loss"] = event.best_val_loss
                self._guard(
                    lambda: record_end(
                        self.db, self._key, event.status, self._metrics, step=event.step
                    )
                )

    def close(self) -> None:
        """Nothing held open: every write opened and closed its own connection."""

    def _guard(self, write: Callable[[], None]) -> None:
        if self._failed:
            return
        try:
            write()
        except Exception as exc:  # sqlite3, OS and schema errors alike: never the run's end
            self._failed = True
            log.warning("run_registry_write_failed", db=str(self.db), error=str(exc))


def _start_row(event: RunStarted, key: str) -> RunRecord:
    return RunRecord(
        run_dir=key,
        name=str(event.config.get("name", Path(key).name)),
        started_at=utc_now(),
        config_hash=config_hash(event.config),
        git_commit=git_commit(),
        status="running",
        step=event.start_step,
        max_steps=event.max_steps,
        num_params=event.num_params,
    )


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the resolved config as JSON with sorted keys: equal configs, equal hashes."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the git repository around `cwd` (default: the current folder), or None
    outside one, without git, or when git does not answer within a few seconds."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None
