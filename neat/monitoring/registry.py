"""Maps the names in `monitoring.monitors` to factories; plugins add theirs by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from neat.errors import ConfigError
from neat.interfaces import IMonitor
from neat.monitoring.console import ConsoleMonitor
from neat.monitoring.metrics_file import MetricsFileMonitor
from neat.monitoring.structlog_monitor import StructlogMonitor

__all__ = [
    "MONITORS",
    "MonitorContext",
    "MonitorFactory",
    "build_monitors",
    "check_monitor_names",
    "register_monitor",
]


@dataclass(frozen=True)
class MonitorContext:
    """What a monitor factory may use: the run directory, the shared console, the bar mode."""

    run_dir: Path
    console: Console
    progress_mode: str


MonitorFactory = Callable[[MonitorContext], IMonitor]

MONITORS: dict[str, MonitorFactory] = {
    "console": lambda ctx: ConsoleMonitor(ctx.console, ctx.progress_mode),
    "structlog": lambda ctx: StructlogMonitor(ctx.run_dir / "log.jsonl"),
    "metrics": lambda ctx: MetricsFileMonitor(ctx.run_dir / "metrics.jsonl"),
}


def register_monitor(
    name: str, factory: MonitorFactory, *, replace: bool = False
) -> MonitorFactory:
    """Make `name` usable in `monitoring.monitors`. Refuses to shadow a name unless `replace`."""
    if name in MONITORS and not replace:
        raise ValueError(f"monitor {name!r} is already registered; pass replace=True to swap it")
    MONITORS[name] = factory
    return factory


def build_monitors(names: Sequence[str], ctx: MonitorContext) -> list[IMonitor]:
    """Build the named monitors in order; every name is checked before any monitor is built."""
    check_monitor_names(names)
    return [MONITORS[name](ctx) for name in names]


def check_monitor_names(names: Sequence[str]) -> None:
    """Raise ConfigError for an unknown or repeated name (before a run writes anything)."""
    seen: set[str] = set()
    for name in names:
        if name not in MONITORS:
            known = ", ".join(sorted(MONITORS))
            raise ConfigError(f"unknown monitor {name!r} in monitoring.monitors; known: {known}")
        if name in seen:
            # Two console monitors would fight over one live display.
            raise ConfigError(f"monitor {name!r} is listed twice in monitoring.monitors")
        seen.add(name)
