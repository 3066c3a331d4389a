from __future__ import annotations

import structlog

from neat.monitoring import EventBus, StepCompleted, TrainMetrics


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
    assert len(logs) == 1
    assert logs[0]["event"] == "subscriber_failed_detached"
    assert logs[0]["log_level"] == "error"
    assert (
        logs[0]["subscriber"]
        == "test_raising_subscriber_is_logged_and_detached_others_keep_receiving.<locals>.broken"
    )
    assert logs[0]["event_type"] == "int"
