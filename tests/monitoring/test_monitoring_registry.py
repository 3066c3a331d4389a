from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from neat.errors import ConfigError
from neat.interfaces import IMonitor
from neat.monitoring import (
    MONITORS,
    ConsoleMonitor,
    MetricsFileMonitor,
    MonitorContext,
    StructlogMonitor,
    build_monitors,
    register_monitor,
)


class _Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def on_event(self, event: object) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


@pytest.fixture
def ctx(tmp_path: Path) -> MonitorContext:
    return MonitorContext(
        run_dir=tmp_path, console=Console(file=io.StringIO()), progress_mode="plain"
    )


def test_builds_the_default_monitors_in_order(ctx: MonitorContext) -> None:
    console, structured, metrics = build_monitors(["console", "structlog", "metrics"], ctx)

    assert isinstance(console, ConsoleMonitor)
    assert not console.rich
    assert isinstance(structured, StructlogMonitor)
    assert isinstance(metrics, MetricsFileMonitor)
    assert metrics.path == ctx.run_dir / "metrics.jsonl"
    assert all(isinstance(m, IMonitor) for m in (console, structured, metrics))


def test_unknown_name_is_a_config_error_listing_known_names(ctx: MonitorContext) -> None:
    with pytest.raises(ConfigError) as info:
        build_monitors(["console", "tensorbored"], ctx)
    assert str(info.value) == (
        "unknown monitor 'tensorbored' in monitoring.monitors; known: console, metrics, structlog"
    )


def test_duplicate_name_is_a_config_error(ctx: MonitorContext) -> None:
    with pytest.raises(ConfigError, match="'console' is listed twice"):
        build_monitors(["console", "console"], ctx)


def test_registered_monitor_can_be_built_and_names_are_not_shadowed(
    ctx: MonitorContext,
) -> None:
    register_monitor("recorder", lambda _ctx: _Recorder())
    try:
        [monitor] = build_monitors(["recorder"], ctx)
        assert isinstance(monitor, _Recorder)
        with pytest.raises(ValueError, match="already registered"):
            register_monitor("console", lambda _ctx: _Recorder())
    finally:
        MONITORS.pop("recorder")
