"""Training data that follows a changing corpus: new token data at each epoch boundary.

A source whose documents change during a run (the markdown index, re-indexed by a monitor)
would break exact resume and the sampler's per-epoch plan if it changed mid-epoch. So the
change is taken only where an epoch ends: the source's fingerprint is compared, and when it
moved the corpus is prepared again (through the token cache) and a fresh sampler continues
at the next epoch number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog

from neat.data.pipeline import TokenData
from neat.data.prepare import source_parts
from neat.data.sampler import BatchSampler
from neat.errors import NeatError
from neat.interfaces import Batch, IDataSource
from neat.monitoring.events import StepCompleted

__all__ = ["DataRefresh", "LiveSource", "RefreshMonitor", "RefreshingSampler", "live_parts"]

log = structlog.get_logger(__name__)


@runtime_checkable
class LiveSource(Protocol):
    """A source that can bring itself up to date (e.g. re-index its files) every
    `reindex_interval` training steps."""

    reindex_interval: int

    def refresh(self) -> dict[str, Any]: ...

    def fingerprint(self) -> str: ...


def live_parts(source: IDataSource) -> list[LiveSource]:
    """The parts of `source` (itself, or a mixture's parts) that refresh during training."""
    return [
        part
        for part, _ in source_parts(source)
        if isinstance(part, LiveSource) and part.reindex_interval > 0
    ]


class RefreshMonitor:
    """Implements IMonitor: every `interval` steps, `source.refresh()`.

    The monitor only keeps the source current; its changes reach training at the next epoch
    boundary (`RefreshingSampler`). It runs in the training process between steps.
    """

    def __init__(self, source: LiveSource, interval: int) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.source = source
        self.interval = interval

    def on_event(self, event: object) -> None:
        if not isinstance(event, StepCompleted) or event.step % self.interval:
            return
        try:
            report = self.source.refresh()
        except NeatError as exc:  # e.g. another process is writing the index right now
            log.warning("source_refresh_failed", step=event.step, error=str(exc))
            return
        changed = {k: report.get(k, 0) for k in ("added", "updated", "removed")}
        if any(changed.values()):
            log.info("source_refreshed", step=event.step, **changed)

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class DataRefresh:
    """One swap of the training data, at the start of `epoch`."""

    epoch: int
    old_fingerprint: str
    new_fingerprint: str
    train_tokens: int


class RefreshingSampler:
    """A `BatchSampler` rebuilt from `prepare()` when `fingerprint()` changes at an epoch end.

    `prepare` returns the token data of the source as it is now; `make_sampler` turns token
    data into a sampler (same batch size, block size, seed and device as the first). A refresh
    that fails (a document the tokenizer cannot encode, a corpus now too small for a batch)
    is logged and training goes on with the data it had.
    """

    def __init__(
        self,
        token_data: TokenData,
        fingerprint: Callable[[], str],
        prepare: Callable[[], TokenData],
        make_sampler: Callable[[TokenData], BatchSampler],
    ) -> None:
        self.fingerprint = fingerprint
        self.prepare = prepare
        self.make_sampler = make_sampler
        self.token_data = token_data
        self.sampler = make_sampler(token_data)
        self.current = fingerprint()
        self.refreshes: list[DataRefresh] = []

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    @property
    def batches_per_epoch(self) -> int:
        return self.sampler.batches_per_epoch

    def next_batch(self) -> Batch:
        if self.sampler.state_dict()["cursor"] == 0:
            self._refresh_if_changed()
        return self.sampler.next_batch()

    def _refresh_if_changed(self) -> None:
        latest = self.fingerprint()
        if latest == self.current:
            return
        epoch = self.sampler.epoch
        try:
            token_data = self.prepare()
            sampler = self.make_sampler(token_data)
        except NeatError as exc:
            log.warning(
                "data_refresh_failed",
                epoch=epoch,
                error=str(exc),
                hint="training goes on with the previous documents",
            )
            self.current = latest  # do not retry the same content every epoch
            return
        sampler.load_state_dict({"epoch": epoch, "cursor": 0})
        refresh = DataRefresh(epoch, self.current, latest, len(token_data.train))
        self.sampler, self.token_data, self.current = sampler, token_data, latest
        self.refreshes.append(refresh)
        log.info(
            "data_refreshed",
            epoch=epoch,
            train_tokens=refresh.train_tokens,
            batches_per_epoch=sampler.batches_per_epoch,
        )

    def state_dict(self) -> dict[str, Any]:
        return {**self.sampler.state_dict(), "fingerprint": self.current}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Exact when the corpus is the one the checkpoint trained on. Otherwise the
        checkpoint's epoch order no longer exists: training goes on with the current corpus
        from the start of the next epoch, and says so."""
        saved = state.get("fingerprint")
        position = {k: v for k, v in state.items() if k != "fingerprint"}
        if saved is None or saved == self.current:
            self.sampler.load_state_dict(position)
            return
        epoch = int(position.get("epoch", 0))
        next_epoch = epoch + (1 if position.get("cursor", 0) else 0)
        log.warning(
            "data_changed_since_checkpoint",
            checkpoint_epoch=epoch,
            resume_epoch=next_epoch,
            hint="the documents changed after the checkpoint was written; resuming with the "
            "current documents at the next epoch (not bit-exact)",
        )
        self.sampler.load_state_dict({"epoch": next_epoch, "cursor": 0})
