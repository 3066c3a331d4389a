"""Human-facing progress: a live rich bar on a terminal, one line per log interval elsewhere.

Plain lines suit CI logs and pipes, where a redrawn bar turns into noise.
"""

from __future__ import annotations

from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from neat.config import ComponentConfig, register_component
from neat.errors import ConfigError
from neat.interfaces.contexts import MonitorContext
from neat.monitoring.events import (
    CheckpointSaved,
    EvalCompleted,
    RunFinished,
    RunStarted,
    StepCompleted,
    TrainMetrics,
)

__all__ = ["PROGRESS_MODES", "ConsoleMonitor", "format_duration", "format_rate"]

PROGRESS_MODES = ("auto", "rich", "plain")


class ConsoleMonitor:
    """Shows training progress on the shared console (the one logs print through).

    `mode`: "rich" (live bar), "plain" (lines) or "auto" (rich when the console is a terminal).
    """

    def __init__(self, console: Console, mode: str = "auto") -> None:
        if mode not in PROGRESS_MODES:
            raise ConfigError(
                f"unknown progress mode {mode!r} in monitoring.progress; "
                f"use one of {', '.join(PROGRESS_MODES)}"
            )
        self.console = console
        self.rich = mode == "rich" or (mode == "auto" and console.is_terminal)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._start_step = 0
        self._max_steps: int | None = None
        # Step rate is measured from the first TrainMetrics on, so compile/warm-up time before
        # it does not drag the ETA down for the rest of the run.
        self._rate_origin: tuple[int, float] | None = None

    def on_event(self, event: object) -> None:
        match event:
            case StepCompleted():
                if self._progress is not None and self._task is not None:
                    self._progress.update(self._task, completed=event.step)
            case TrainMetrics():
                self._on_train(event)
            case EvalCompleted():
                self._print(format_eval(event))
            case CheckpointSaved():
                self._print(f"checkpoint step {event.step} -> {event.path}")
            case RunStarted():
                self._on_start(event)
            case RunFinished():
                if self._progress is not None and self._task is not None:
                    self._progress.update(self._task, completed=event.step)
                self._stop()
                self._print(format_finish(event))

    def close(self) -> None:
        self._stop()

    def _on_start(self, event: RunStarted) -> None:
        self._stop()
        self._start_step = event.start_step
        self._max_steps = event.max_steps
        self._rate_origin = None
        self._print(format_start(event))
        if self.rich:
            self._progress = _progress_bar(self.console)
            self._task = self._progress.add_task(
                "train",
                total=event.max_steps,
                completed=event.start_step,
                loss="-",
                tok_s="-",
            )
            self._progress.start()

    def _on_train(self, event: TrainMetrics) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=event.step,
                loss=f"{event.loss:.4f}",
                tok_s=format_rate(event.tokens_per_s),
            )
            return
        if not self.rich:
            self._print(format_train(event, self._max_steps, self._eta(event)))

    def _eta(self, event: TrainMetrics) -> float | None:
        """Seconds left at the step rate measured so far, or None before it can be measured."""
        if self._rate_origin is None:
            origin = (self._start_step, 0.0)
            self._rate_origin = (event.step, event.elapsed_s)
        else:
            origin = self._rate_origin
        steps, seconds = event.step - origin[0], event.elapsed_s - origin[1]
        if self._max_steps is None or steps <= 0 or seconds <= 0:
            return None
        return max(self._max_steps - event.step, 0) * seconds / steps

    def _print(self, line: str) -> None:
        target = self._progress.console if self._progress is not None else self.console
        target.print(line, markup=False, highlight=False, soft_wrap=True)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tok_s]} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def format_train(event: TrainMetrics, max_steps: int | None, eta_s: float | None) -> str:
    """`step 100/2000 | loss 2.4512 | lr 9.90e-04 | 12.3k tok/s | mfu 31.2% | eta 1m23s`."""
    step = f"step {event.step}/{max_steps}" if max_steps is not None else f"step {event.step}"
    parts = [step, f"loss {event.loss:.4f}", f"lr {event.lr:.2e}"]
    if event.grad_norm is not None:
        parts.append(f"gnorm {event.grad_norm:.3f}")
    parts.append(f"{format_rate(event.tokens_per_s)} tok/s")
    if event.mfu is not None:
        parts.append(f"mfu {event.mfu * 100:.1f}%")  # mfu is a fraction of peak
    parts += [f"{name} {value:.4g}" for name, value in event.extra.items()]
    if eta_s is not None:
        parts.append(f"eta {format_duration(eta_s)}")
    return " | ".join(parts)


def format_eval(event: EvalCompleted) -> str:
    """`eval step 250 | val_loss 1.9876 | val_ppl 7.30 | val_bpb 2.868`."""
    parts = [f"eval step {event.step}"]
    parts += [f"{name} {_metric(name, value)}" for name, value in event.metrics.items()]
    return " | ".join(parts)


def format_start(event: RunStarted) -> str:
    verb = "resume" if event.start_step > 0 else "start"
    return (
        f"{verb} {event.run_dir} | step {event.start_step}/{event.max_steps} | "
        f"{format_rate(event.num_params)} params | {event.device} | "
        f"{format_rate(event.tokens_per_step)} tok/step"
    )


def format_finish(event: RunFinished) -> str:
    parts = [f"run {event.status} at step {event.step}", format_duration(event.elapsed_s)]
    if event.best_val_loss is not None:
        parts.append(f"best val_loss {event.best_val_loss:.4f}")
    return " | ".join(parts)


def format_rate(value: float) -> str:
    """Compact count: 950, 12.3k, 4.5M, 1.2G."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:.0f}"


def format_duration(seconds: float) -> str:
    """`45s`, `1m23s`, `2h05m`, `3d04h`."""
    total = max(round(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _metric(name: str, value: float) -> str:
    if name.endswith("loss"):
        return f"{value:.4f}"
    if name.endswith("ppl"):
        return f"{value:.2f}"
    if name.endswith("bpb"):
        return f"{value:.3f}"
    return f"{value:.4g}"


class ConsoleMonitorConfig(ComponentConfig):
    """Progress with ETA, evaluations and checkpoints on the terminal."""

    type: Literal["console"] = "console"


def build_console_monitor(cfg: ConsoleMonitorConfig, ctx: MonitorContext) -> ConsoleMonitor:
    return ConsoleMonitor(ctx.console, ctx.progress_mode)


register_component("monitor", ConsoleMonitorConfig, build_console_monitor)
