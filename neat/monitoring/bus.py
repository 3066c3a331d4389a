"""A synchronous publish/subscribe bus that decouples the loop from whatever watches it."""

from __future__ import annotations

from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

Handler = Callable[[object], None]


class EventBus:
    """Delivers each event to its subscribers in order.

    A subscriber that raises is logged and detached: monitoring must never kill training.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[Handler, tuple[type, ...] | None]] = []

    def subscribe(self, handler: Handler, *event_types: type) -> Callable[[], None]:
        """Call `handler` for events of `event_types` (all when none). Returns an unsubscribe."""
        entry = (handler, event_types or None)
        self._subscribers.append(entry)
        return lambda: self._remove(entry)

    def publish(self, event: object) -> None:
        for entry in list(self._subscribers):
            handler, types = entry
            if types is not None and not isinstance(event, types):
                continue
            try:
                handler(event)
            except Exception:
                log.exception(
                    "subscriber_failed_detached",
                    subscriber=_name(handler),
                    event_type=type(event).__name__,
                )
                self._remove(entry)

    def _remove(self, entry: tuple[Handler, tuple[type, ...] | None]) -> None:
        if entry in self._subscribers:
            self._subscribers.remove(entry)

    def __len__(self) -> int:
        return len(self._subscribers)


def _name(handler: Handler) -> str:
    owner = getattr(handler, "__self__", None)
    return type(owner).__name__ if owner is not None else getattr(handler, "__qualname__", "?")
