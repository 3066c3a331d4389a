from __future__ import annotations

import errno
import io
import json
from pathlib import Path

import pytest
import structlog
from rich.console import Console

from neat.errors import DiskFullError
from neat.monitoring import EventBus, StepCompleted, TrainMetrics, configure_logging


def _metrics(step: int) -> TrainMetrics:
    return TrainMetrics(
        step=step, loss=1.0, lr=1e-3, tokens_per_s=1.0, grad_norm=None, mfu=None, elapsed_s=1.0
    )


def test_subscribers_receive_events_in_subscription_order() -> None:
    bus = EventBus()
    seen: list[tuple[str, object]] = []
    bus.subscribe(lambda e: seen.append(("a", e)))
    bus.subscribe(lambda e: seen.append(("b", e)))

    bus.publish(1)
    bus.publish(2)

    assert seen == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_type_filter_delivers_only_matching_events() -> None:
    bus = EventBus()
    train: list[object] = []
    everything: list[object] = []
    bus.subscribe(train.append, TrainMetrics)
    bus.subscribe(everything.append)
    step, metrics = StepCompleted(step=1, tokens_seen=8), _metrics(1)

    bus.publish(step)
    bus.publish(metrics)

    assert train == [metrics]
    assert everything == [step, metrics]


def test_unsubscribe_stops_delivery() -> None:
    bus = EventBus()
    seen: list[object] = []
    unsubscribe = bus.subscribe(seen.append)
    bus.publish(1)

    unsubscribe()
    unsubscribe()  # a second call is harmless
    bus.publish(2)

    assert seen == [1]
    assert len(bus) == 0


def test_raising_subscriber_is_logged_and_detached_others_keep_receiving() -> None:
    bus = EventBus()
    before: list[object] = []
    after: list[object] = []
    calls: list[object] = []

    def broken(event: object) -> None:
        calls.append(event)
        raise RuntimeError("boom")

    bus.subscribe(before.append)
    bus.subscribe(broken)
    bus.subscribe(after.append)

    with structlog.testing.capture_logs() as logs:
        bus.publish(1)
        bus.publish(2)

    assert before == [1, 2]
    assert after == [1, 2]
    assert calls == [1]  # detached after the first failure
    assert len(bus) == 2
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warning["event"] == "subscriber_failed_detached"
    assert (
        warning["subscriber"]
        == "test_raising_subscriber_is_logged_and_detached_others_keep_receiving.<locals>.broken"
    )
    assert warning["event_type"] == "int"
    assert warning["error"] == "RuntimeError: boom"


def test_failing_monitor_is_one_warning_line_on_the_console_traceback_in_the_log(
    tmp_path: Path,
) -> None:
    buffer = io.StringIO()
    log_file = tmp_path / "log.jsonl"
    configure_logging(
        Console(file=buffer, width=200), level="INFO", json_file=log_file, console_level="WARNING"
    )
    bus = EventBus()
    seen: list[object] = []

    class Broken:
        def on_event(self, event: object) -> None:
            raise KeyError("missing")

    bus.subscribe(Broken().on_event)
    bus.subscribe(seen.append)
    bus.publish(1)
    bus.publish(2)

    assert seen == [1, 2]
    console = buffer.getvalue().splitlines()
    assert len(console) == 1 and "subscriber_failed_detached" in console[0]
    assert "Broken" in console[0] and "Traceback" not in buffer.getvalue()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [r["event"] for r in records] == [
        "subscriber_failed_detached",
        "subscriber_failure_traceback",
    ]
    assert "KeyError" in json.dumps(records[1]["exception"])


def test_full_disk_in_a_subscriber_stops_the_publisher_after_the_others() -> None:
    bus = EventBus()
    seen: list[object] = []

    def full(event: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/run/custom.log")

    bus.subscribe(full)
    bus.subscribe(seen.append)
    with pytest.raises(DiskFullError, match=r"/data/run/custom\.log: No space left on device"):
        bus.publish(1)
    assert seen == [1]  # the event still reached everyone
