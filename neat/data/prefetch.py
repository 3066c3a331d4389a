"""Batches produced ahead on a background thread, so the GPU never waits for the host.

The sampler's gather and the pinned host-to-device copy run while the previous steps
compute. The position reported for checkpoints is that of the last batch *handed out*, not
of the last one produced, so resume stays exact.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from neat.interfaces import Batch, IBatchSource

__all__ = ["PrefetchingBatches"]


class PrefetchingBatches:
    """Wraps a sampler: a daemon thread keeps `depth` batches ready (with the sampler's
    position after each), started on the first `next_batch`."""

    def __init__(self, inner: IBatchSource, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.inner = inner
        self.depth = depth
        self._queue: queue.Queue[tuple[Batch, dict[str, Any]] | BaseException] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = dict(inner.state_dict())

    def __getattr__(self, name: str) -> Any:  # epoch, batches_per_epoch, refreshes, ...
        return getattr(self.inner, name)

    def _produce(self, out: queue.Queue[tuple[Batch, dict[str, Any]] | BaseException]) -> None:
        try:
            while not self._stop.is_set():
                batch = self.inner.next_batch()
                item = (batch, dict(self.inner.state_dict()))
                while not self._stop.is_set():
                    try:
                        out.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the consumer, raised there
            out.put(exc)

    def _start(self) -> queue.Queue[tuple[Batch, dict[str, Any]] | BaseException]:
        self._stop.clear()
        self._queue = queue.Queue(maxsize=self.depth)
        self._thread = threading.Thread(
            target=self._produce, args=(self._queue,), name="neat-prefetch", daemon=True
        )
        self._thread.start()
        return self._queue

    def next_batch(self) -> Batch:
        pending = self._queue if self._queue is not None else self._start()
        item = pending.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        batch, self._state = item
        return batch

    def state_dict(self) -> dict[str, Any]:
        return dict(self._state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Drop what was produced ahead and continue from `state`."""
        self.close()
        self.inner.load_state_dict(state)
        self._state = dict(self.inner.state_dict())

    def close(self) -> None:
        """Stop the producer; the batches it made ahead are discarded."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread, self._queue = None, None
        # the inner sampler ran ahead: put it back where the consumer is
        self.inner.load_state_dict(self._state)
