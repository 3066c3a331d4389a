"""The one place neat configures logging; library modules only call `structlog.get_logger`.

structlog hands every entry to stdlib `logging`, and each handler renders it with its own
`ProcessorFormatter`. That way third-party stdlib records (torch, datasets) get the same
timestamp/level treatment and reach the same console and JSON-lines files as neat's own.

The console handler prints through the shared rich `Console`: a writer holding the raw stream
would tear a live progress bar, while `console.print` scrolls the line above it.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.text import Text
from structlog.typing import Processor

from neat.errors import ConfigError
from neat.files import FILE_MODE
from neat.monitoring.disk import append_whole, disk_full_error, is_disk_full

__all__ = ["RichConsoleHandler", "add_json_log_file", "configure_logging", "configure_rank_logging"]

# Handlers installed by configure_logging carry these names, so a second call can find and
# replace them without touching handlers that someone else (pytest, the user) attached.
_CONSOLE_HANDLER = "neat.console"
_JSON_HANDLER = "neat.json"
_ADDED_JSON_HANDLER = "neat.json.run"
_PENDING_HANDLER = "neat.pending"
TRAIN_LOGGER = "neat.train"

# Added to structlog entries and to foreign stdlib records alike.
_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


class RichConsoleHandler(logging.Handler):
    """Prints formatted records through a rich `Console`, so live progress bars stay intact."""

    def __init__(self, console: Console, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text.from_ansi(self.format(record)), soft_wrap=True)
        except Exception:
            self.handleError(record)


def configure_logging(
    console: Console | None = None,
    level: str = "INFO",
    json_file: Path | None = None,
    *,
    console_level: str | None = None,
) -> None:
    """Route structlog and stdlib logging to `console` (stderr by default) and `json_file`.

    `level` is the minimum of every record, `console_level` (default: `level`) the higher
    bar of the console: `neat train` keeps its console to progress and warnings while the
    run's log.jsonl still gets the info records. Pretty output when the console is a
    terminal, JSON lines otherwise. Calling it again replaces the handlers it installed
    before (a CLI test runner calls it once per invoke); handlers attached with
    `add_json_log_file` stay until their own detach.
    """
    numeric_level = _parse_level(level)
    shown_level = _parse_level(console_level) if console_level is not None else numeric_level
    console = console if console is not None else Console(stderr=True, emoji=False)

    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.name in (_CONSOLE_HANDLER, _JSON_HANDLER, _PENDING_HANDLER):
            root.removeHandler(handler)
            handler.close()

    console_handler = RichConsoleHandler(console, shown_level)
    console_handler.set_name(_CONSOLE_HANDLER)
    console_handler.setFormatter(_console_formatter(console))
    # Training events reach the console through ConsoleMonitor; logging them again would echo.
    console_handler.addFilter(lambda record: record.name != TRAIN_LOGGER)
    root.addHandler(console_handler)
    if json_file is not None:
        root.addHandler(_json_file_handler(json_file, _JSON_HANDLER))
    root.addHandler(_PendingRecords())
    root.setLevel(min(numeric_level, shown_level))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: entries are rare (every log_interval steps), and a cached logger would
        # ignore later configure()/reset_defaults() calls, which CLI runs and tests make.
        cache_logger_on_first_use=False,
    )


def add_json_log_file(path: Path) -> Callable[[], None]:
    """Also write every log record to `path` as JSON lines; returns a function that detaches it.

    For the run's `log.jsonl`, whose directory is known only after the config is loaded.
    Records reach it once `configure_logging` has routed structlog through stdlib logging.
    """
    handler = _json_file_handler(path, _ADDED_JSON_HANDLER)
    root = logging.getLogger()
    for pending in root.handlers:
        if isinstance(pending, _PendingRecords):
            pending.replay(handler)
    root.addHandler(handler)

    def detach() -> None:
        root.removeHandler(handler)
        handler.close()

    return detach


def configure_rank_logging(rank: int) -> None:
    """Under torchrun: tag every entry with its rank, and let ranks other than 0 log only
    warnings and errors, so the console shows one run rather than N interleaved copies."""
    structlog.contextvars.bind_contextvars(rank=rank)
    if rank != 0:
        root = logging.getLogger()
        root.setLevel(max(root.level, logging.WARNING))


def _parse_level(level: str) -> int:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        known = "DEBUG, INFO, WARNING, ERROR, CRITICAL"
        raise ConfigError(f"unknown log level {level!r}; use one of {known}")
    return numeric


def _formatter(processors: Sequence[Processor]) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *processors],
    )


def _json_processors() -> list[Processor]:
    return [
        structlog.processors.dict_tracebacks,
        structlog.processors.JSONRenderer(default=_json_default, ensure_ascii=False),
    ]


def _console_formatter(console: Console) -> structlog.stdlib.ProcessorFormatter:
    if not console.is_terminal:  # a pipe or a file: no colours; log.jsonl has the JSON
        return _formatter([structlog.dev.ConsoleRenderer(colors=False)])
    renderer = structlog.dev.ConsoleRenderer(
        # Locals of a training frame can be whole tensors: keep tracebacks short.
        exception_formatter=structlog.dev.RichTracebackFormatter(
            show_locals=False, width=console.width
        ),
    )
    return _formatter([renderer])


class _PendingRecords(logging.Handler):
    """Keeps the records logged while no run log is attached (the cache and tokenizer notices
    of the data checks, made before a run directory may be written), so that the run's
    log.jsonl starts with them although the console no longer shows them."""

    def __init__(self, capacity: int = 10_000) -> None:
        super().__init__()
        self.set_name(_PENDING_HANDLER)
        self.records: deque[logging.LogRecord] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        if not any(h.name == _ADDED_JSON_HANDLER for h in logging.getLogger().handlers):
            self.records.append(record)

    def replay(self, handler: logging.Handler) -> None:
        while self.records:
            handler.handle(self.records.popleft())


class _JsonFileHandler(logging.Handler):
    """Appends each record to a file as one whole line (one write, taken back if the disk cut
    it short). A full disk raises `DiskFullError` to the code that logged, which ends the
    run, instead of printing a "--- Logging error ---" traceback per record."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        self._full = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._full or self._fd is None:  # the run is ending: later records fail the same
            return
        try:
            append_whole(self._fd, (self.format(record) + "\n").encode("utf-8"))
        except OSError as exc:
            if not is_disk_full(exc):
                self.handleError(record)
                return
            self._full = True
            raise disk_full_error(self.path, exc) from exc
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            self.release()
        super().close()


def _json_file_handler(path: Path, name: str) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _JsonFileHandler(path)
    handler.set_name(name)
    handler.setFormatter(_formatter(_json_processors()))
    return handler


def _json_default(value: Any) -> Any:
    """Serialise what JSON can't: paths and numpy/torch scalars as their plain text."""
    to_structlog = getattr(value, "__structlog__", None)
    return to_structlog() if callable(to_structlog) else str(value)
