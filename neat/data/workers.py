"""Tokenizing in worker processes, and stopping cleanly on SIGTERM, Ctrl-C and kill -9.

A tokenizer without a vectorised encoder (BPE, a Hugging Face `tokenizer.json`, a user's class)
runs in worker processes (`forkserver`, or `spawn` where there is none; nothing relies on
`fork`). A worker gets the tokenizer as its saved file when `load_tokenizer` reads that back to
the same fingerprint, else as a pickle. At most two tasks per worker are in flight, and results
come back in submission order, so the output is the same for any worker count and memory
stays flat.

Workers never outlive the process that started them. Each watches that process (a pidfd on
Linux, else polling its pid) and exits the moment it is gone, even after kill -9; that also
lets the forkserver and the resource tracker exit, since the workers held their pipes open.
Ctrl-C reaches only the parent (workers ignore SIGINT), and a parent that stops early
terminates its workers at once rather than waiting for their tasks.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import forkserver, get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from neat.data.encode import Encoded, Encoder, Item
from neat.data.tokenizers import load_tokenizer
from neat.errors import TrainingInterrupted
from neat.files import pid_alive
from neat.interfaces import ITokenizer

__all__ = [
    "INFLIGHT_PER_WORKER",
    "PrepareInterrupted",
    "in_process",
    "in_workers",
    "stop_on_signals",
    "worker_tokenizer",
]

INFLIGHT_PER_WORKER = 2
_TERMINATE_WAIT_S = 2.0  # then SIGKILL: a worker stuck in C code must not hold the exit up


# -- stopping on signals ---------------------------------------------------------------------------


class PrepareInterrupted(TrainingInterrupted, KeyboardInterrupt):
    """SIGTERM or Ctrl-C while a token cache entry was being built; nothing half-built is kept.

    A TrainingInterrupted, so the CLI exits 128 + the signal's number (143, 130) with one line;
    a KeyboardInterrupt, so code that catches Ctrl-C around a prepare still does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum, None)

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return (
            f"token cache building stopped by {name}; the partial entry was removed and "
            "the next `neat data prepare` or `neat train` builds it again"
        )


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and Ctrl-C raise PrepareInterrupted in the main thread, so the `finally`s on the
    way out stop the workers and remove the partial entry (SIGTERM's default would kill this
    process at once and orphan its workers). Handlers the application installed itself are
    kept; a second signal while stopping is ignored, so it cannot cut the cleanup short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise PrepareInterrupted(signum)

    previous: dict[int, Any] = {}
    for wanted in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(wanted) in (signal.SIG_DFL, signal.default_int_handler):
            previous[wanted] = signal.signal(wanted, stop)
    try:
        yield
    except KeyboardInterrupt as exc:  # Ctrl-C before the handler was installed, or re-raised
        if isinstance(exc, PrepareInterrupted):
            raise
        raise PrepareInterrupted(signal.SIGINT) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- worker processes ------------------------------------------------------------------------------

_WORKER: Encoder | None = None


def _exit_with(parent: int) -> None:
    """End this worker as soon as process `parent` is gone (however it died)."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(parent)
        except ProcessLookupError:
            os._exit(1)
        except (AttributeError, OSError):  # no pidfd (macOS, old kernels): poll the pid
            while pid_alive(parent):
                time.sleep(0.2)
            os._exit(1)
        select.select([fd], [], [])  # readable once the process has exited
        os._exit(1)

    threading.Thread(target=watch, name="neat-parent-watch", daemon=True).start()


def _init_worker(parent: int, kind: str, payload: Any, dtype: str, masked: bool) -> None:
    global _WORKER
    _exit_with(parent)
    # Ctrl-C in a terminal reaches the whole process group: only the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The processes are the parallelism: a Hugging Face tokenizer's own threads would only
    # oversubscribe the cores (the variable is read before its first parallel call).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tokenizer: ITokenizer = load_tokenizer(Path(payload)) if kind == "file" else payload
    _WORKER = Encoder(tokenizer, np.dtype(dtype), masked)


def _work(items: Sequence[Item]) -> Encoded:
    if _WORKER is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("prepare worker used before its initializer ran")
    return _WORKER(items)


def _context() -> BaseContext:
    """forkserver where there is one (workers fork from a clean server process), else spawn."""
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    # The server imports this module once, so each worker starts in milliseconds instead of
    # importing it anew (about a second). Only effective before the server first starts.
    preload = getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"]
    if __name__ not in preload:
        context.set_forkserver_preload([*preload, __name__])
    return context


def worker_tokenizer(tokenizer: ITokenizer, folder: Path) -> tuple[str, Any] | str:
    """How a worker gets the tokenizer, ("file", path) or ("pickle", tokenizer), or why no
    worker can."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and not os.path.isfile(main_file):  # e.g. `python - < script`
        return f"worker processes cannot re-import the main module {main_file!r}"
    path = folder / "tokenizer.json"
    try:
        if path.is_file() and load_tokenizer(path).fingerprint() == tokenizer.fingerprint():
            return "file", str(path)
    except Exception:  # a file this tokenizer wrote but cannot read back: try a pickle
        pass
    if type(tokenizer).__module__ == "__main__" and not main_file:
        return "the tokenizer's class is defined in an interactive session"
    try:
        pickle.dumps(tokenizer)
    except Exception as exc:
        return f"the tokenizer can neither be saved and reloaded nor pickled ({exc})"
    return "pickle", tokenizer


def in_process(tasks: Iterator[list[Item]], encoder: Encoder) -> Iterator[Encoded]:
    for task in tasks:
        yield encoder(task)


def in_workers(
    tasks: Iterator[list[Item]], workers: int, spec: tuple[str, Any], dtype: str, masked: bool
) -> Iterator[Encoded]:
    """The tasks' results, in order, from `workers` processes. Closing this iterator early
    (an error, a signal) terminates the workers instead of waiting for their tasks."""
    pending: deque[Future[Encoded]] = deque()
    pool = ProcessPoolExecutor(
        workers,
        mp_context=_context(),
        initializer=_init_worker,
        initargs=(os.getpid(), *spec, dtype, masked),
    )
    finished = False
    try:
        for task in tasks:
            pending.append(pool.submit(_work, task))
            if len(pending) >= workers * INFLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        finished = True
    finally:
        if not finished:
            # Not cancelling the pending futures first: the pool's manager thread fails them
            # when it sees the workers gone, and a cancelled one would stop it there before it
            # unblocks its queue, hanging this process at exit.
            _terminate(pool)
        pool.shutdown(wait=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the pool's workers now: the results of their tasks would be thrown away."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + _TERMINATE_WAIT_S
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join(1.0)
