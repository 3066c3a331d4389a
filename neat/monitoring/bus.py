"""A synchronous publish/subscribe bus that decouples the loop from whatever watches it."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from neat.errors import NeatError
from neat.monitoring.disk import disk_full_error, is_disk_full

log = structlog.get_logger(__name__)

Handler = Callable[[object], None]


class EventBus:
    """Delivers each event to every subscriber, in subscription order.

    A subscriber that raises is reported once (a warning) and detached: one broken monitor
    must neither kill training nor starve the others. A `NeatError` (a full disk, say) is
    the user's to fix and would hit every later write too, so it is raised to the publisher
    once the event has reached the remaining subscribers.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[Handler, tuple[type, ...] | None]] = []

    def subscribe(self, handler: Handler, *event_types: type) -> Callable[[], None]:
        """Call `handler` for events of `event_types` (all when none). Returns an unsubscribe."""
        entry = (handler, event_types or None)
        self._subscribers.append(entry)
        return lambda: self._remove(entry)

    def publish(self, event: object) -> None:
        stop: NeatError | None = None
        for entry in list(self._subscribers):
            handler, types = entry
            if types is not None and not isinstance(event, types):
                continue
            try:
                handler(event)
            except NeatError as exc:
                stop = stop or exc
            except Exception as exc:
                if is_disk_full(exc):  # a third-party monitor's own file: still the disk
                    stop = stop or _disk_full(handler, exc)
                    continue
                self._remove(entry)
                try:
                    _report(handler, event, exc)
                except NeatError as report_failed:  # the log file is on the same full disk
                    stop = stop or report_failed
        if stop is not None:
            raise stop

    def _remove(self, entry: tuple[Handler, tuple[type, ...] | None]) -> None:
        if entry in self._subscribers:
            self._subscribers.remove(entry)

    def __len__(self) -> int:
        return len(self._subscribers)


def _report(handler: Handler, event: object, exc: Exception) -> None:
    """One warning line for the console; the traceback goes to the run's log only."""
    name, event_type = _name(handler), type(event).__name__
    log.warning(
        "subscriber_failed_detached",
        subscriber=name,
        event_type=event_type,
        error=f"{type(exc).__name__}: {exc}",
        hint="the run goes on without this monitor",
    )
    log.info("subscriber_failure_traceback", subscriber=name, exc_info=exc)


def _disk_full(handler: Handler, exc: Exception) -> NeatError:
    assert isinstance(exc, OSError)
    return disk_full_error(exc.filename or f"the files of {_name(handler)}", exc)


def _name(handler: Handler) -> str:
    owner = getattr(handler, "__self__", None)
    return type(owner).__name__ if owner is not None else getattr(handler, "__qualname__", "?")
