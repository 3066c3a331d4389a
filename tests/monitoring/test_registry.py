"""Monitors are `monitor` components of the one registry: named in `monitoring.monitors`,
validated with the config, built with a MonitorContext."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import pytest
from rich.console import Console

from neat.config import ComponentConfig, load_config, register_component
from neat.config.schema import MonitoringConfig
from neat.data import TextFileSource
from neat.di.factories import make_monitors
from neat.errors import ConfigError
from neat.interfaces import IMonitor
from neat.interfaces.contexts import MonitorContext
from neat.monitoring import ConsoleMonitor, MetricsFileMonitor, StructlogMonitor
from neat.monitoring.registry_monitor import RegistryMonitor


class _Recorder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.events: list[object] = []

    def on_event(self, event: object) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


class RecorderConfig(ComponentConfig):
    type: Literal["recorder"] = "recorder"
    prefix: str = "rec"


def _build_recorder(cfg: RecorderConfig, ctx: MonitorContext) -> _Recorder:
    return _Recorder(cfg.prefix)


@pytest.fixture(autouse=True)
def recorder_registered() -> None:
    register_component("monitor", RecorderConfig, _build_recorder)


def _monitors(tmp_path: Path, monitoring: MonitoringConfig) -> list[IMonitor]:
    (tmp_path / "c.txt").write_text("hello", encoding="utf-8")
    source = TextFileSource([str(tmp_path / "c.txt")])
    console = Console(file=io.StringIO())
    return make_monitors(monitoring, tmp_path, console, source)


def _monitoring(monitors: object) -> MonitoringConfig:
    config = load_config(
        raw={"data": {"path": "x"}, "monitoring": {"monitors": monitors, "progress": "plain"}}
    )
    return config.monitoring


def test_builds_the_default_monitors_in_order(tmp_path: Path) -> None:
    console, structured, metrics, registry = _monitors(
        tmp_path, _monitoring(["console", "structlog", "metrics"])
    )

    assert isinstance(console, ConsoleMonitor)
    assert not console.rich
    assert isinstance(structured, StructlogMonitor)
    assert isinstance(metrics, MetricsFileMonitor)
    assert metrics.path == tmp_path / "metrics.jsonl"
    assert isinstance(registry, RegistryMonitor)  # always last: every run is listed
    assert all(isinstance(m, IMonitor) for m in (console, structured, metrics, registry))


def test_unknown_name_is_a_config_error_listing_known_names() -> None:
    with pytest.raises(ConfigError) as info:
        _monitoring(["console", "tensorbored"])
    message = str(info.value)
    assert "monitoring.monitors.1: unknown monitor type 'tensorbored'" in message
    assert "known types: console, metrics, recorder, report, structlog" in message


def test_duplicate_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'console' is listed twice"):
        _monitoring(["console", "console"])


def test_a_registered_monitor_takes_options_and_names_are_not_shadowed(tmp_path: Path) -> None:
    monitoring = _monitoring(["recorder", {"type": "recorder", "prefix": "x"}][1:])
    monitor, _registry = _monitors(tmp_path, monitoring)
    assert isinstance(monitor, _Recorder) and monitor.prefix == "x"
    with pytest.raises(ValueError, match="already registered"):
        register_component("monitor", type("Other", (RecorderConfig,), {}), _build_recorder)


def test_monitors_without_options_are_written_back_as_names() -> None:
    monitoring = _monitoring(["console", {"type": "recorder", "prefix": "x"}])
    dumped = monitoring.model_dump(mode="json")["monitors"]
    assert dumped == ["console", {"type": "recorder", "prefix": "x"}]
