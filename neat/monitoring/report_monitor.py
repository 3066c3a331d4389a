"""`monitoring.monitors: [..., report]`: the run's `report.html`, redrawn after each eval.

Drawing a report takes a second or so of matplotlib, so it happens on a worker thread while
training goes on, and only the newest request is drawn (evals that come faster than drawing
are merged). The request is handed over on the first event after the eval, by which time every
monitor has seen the eval, so `metrics.jsonl` already holds its row. A report that cannot be
drawn costs a warning, never the run.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Literal

import structlog

from neat.config import ComponentConfig, register_component
from neat.errors import ConfigError
from neat.interfaces.contexts import MonitorContext
from neat.monitoring.events import EvalCompleted, RunFinished

__all__ = ["REPORT_FILE", "ReportMonitor", "ReportMonitorConfig"]

log = structlog.get_logger(__name__)

REPORT_FILE = "report.html"


class ReportMonitor:
    def __init__(self, run_dir: Path, out: Path | None = None) -> None:
        self.run_dir = run_dir
        self.out = out or run_dir / REPORT_FILE
        self._eval_seen = False
        self._wake = threading.Event()
        self._stop = False
        self._failed = False
        self._worker = threading.Thread(target=self._loop, name="neat-report", daemon=True)
        self._worker.start()

    def on_event(self, event: object) -> None:
        if self._eval_seen:  # the eval's dispatch to every monitor is over
            self._eval_seen = False
            self._wake.set()
        if isinstance(event, EvalCompleted):
            self._eval_seen = True
        elif isinstance(event, RunFinished):
            self._eval_seen = False

    def close(self) -> None:
        """Wait for a drawing under way, then draw the final state once."""
        self._stop = True
        self._wake.set()
        self._worker.join()
        self._refresh()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            self._refresh()

    def _refresh(self) -> None:
        if self._failed or not (self.run_dir / "metrics.jsonl").is_file():
            return
        from neat.evaluation.report import build_report

        try:
            build_report([self.run_dir], self.out)
        except Exception as exc:  # a report is a view of the run, never a reason to stop it
            self._failed = True
            log.warning("report_failed", path=str(self.out), error=str(exc))


class ReportMonitorConfig(ComponentConfig):
    """The run's report.html (`neat report RUN`), refreshed at each eval; needs `metrics`."""

    type: Literal["report"] = "report"


def build_report_monitor(cfg: ReportMonitorConfig, ctx: MonitorContext) -> ReportMonitor:
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(
            "monitoring.monitors: 'report' draws with matplotlib, which is not installed: "
            "pip install 'neat[plots]', or take 'report' out of the list"
        )
    return ReportMonitor(ctx.run_dir)


register_component("monitor", ReportMonitorConfig, build_report_monitor)
