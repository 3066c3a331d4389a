"""Tokenize a source into a sharded, content-keyed token cache (`neat data prepare`).

Documents are streamed (the corpus is never held whole), grouped into tasks of a few MiB of
text, tokenized, and appended in document order to shard files of at most `shard_tokens`
tokens. Each document ends with the tokenizer's end-of-text id (when it has one), except a
piece of a large file that the next piece continues. With prompt/response data (documents
carrying `metadata["segments"] = [(text, trained), ...]`) a parallel uint8 mask marks the
tokens that are training targets.

Where tokenizing runs:

- byte and char tokenizers have a vectorised numpy encoder here (`array_encoder`) that runs at
  memory speed in this process: shipping text to another process would cost more than
  encoding it;
- any other tokenizer (BPE, a Hugging Face `tokenizer.json`, a user's class) runs in `workers`
  worker processes (`forkserver`, or `spawn` where there is none; nothing relies on `fork`).
  A worker gets the tokenizer as its saved file when `load_tokenizer` reads that back to the
  same fingerprint, else as a pickle. At most two tasks per worker are in flight, and results
  are written in submission order, so the output is the same for any worker count and memory
  stays flat. `encode_batch(texts)` is used where the tokenizer has it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import forkserver, get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from neat.data.cache import (
    CACHE_FORMAT_VERSION,
    DATA_FORMATS,
    MANIFEST,
    TMP_PREFIX,
    Shard,
    key_of,
    open_entry,
    shard_name,
    token_dtype,
)
from neat.data.tokenizers import ByteTokenizer, CharTokenizer, load_tokenizer
from neat.errors import DataError
from neat.interfaces import Document, IDataSource, ITokenizer

__all__ = [
    "DEFAULT_SHARD_TOKENS",
    "PreparedData",
    "array_encoder",
    "load_prepared",
    "prepare_parts",
    "prepare_source",
    "source_parts",
]

log = structlog.get_logger(__name__)

DEFAULT_SHARD_TOKENS = 64 << 20  # 128 MiB shards of uint16
TASK_CHARS = 4 << 20  # at most this much text per task (one unit of work for a worker)
MIN_TASK_CHARS = 256 << 10  # at least this much, so a task outweighs its sending
TASK_DOCUMENTS = 4096  # and at most this many documents
INFLIGHT_PER_WORKER = 2

Segments = list[tuple[str, bool]]
Item = tuple[str | Segments, bool]  # (text, or (text, trained) segments), end with eot?
Encoded = tuple[np.ndarray, np.ndarray | None, int]  # tokens, mask, UTF-8 bytes
ArrayEncoder = Callable[[Sequence[str]], list[np.ndarray]]
Progress = Callable[[int, int], None]


# -- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """A complete cache entry: its folder, manifest and read-only shards."""

    path: Path
    manifest: dict[str, Any]
    shards: tuple[Shard, ...]
    cached: bool = True  # False when this call built it

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def num_tokens(self) -> int:
        return int(self.manifest["tokens"])

    @property
    def documents(self) -> int:
        return int(self.manifest["documents"])

    @property
    def num_bytes(self) -> int:
        return int(self.manifest["bytes"])

    @property
    def has_mask(self) -> bool:
        return bool(self.manifest["has_mask"])

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(str(self.manifest["dtype"]))

    def tokens(self) -> np.ndarray:
        """All tokens as one array (a view when there is one shard, else a copy)."""
        if len(self.shards) == 1:
            return self.shards[0].tokens
        return np.concatenate([s.tokens for s in self.shards])

    def mask(self) -> np.ndarray | None:
        if not self.has_mask:
            return None
        masks = [s.mask for s in self.shards if s.mask is not None]
        return masks[0] if len(masks) == 1 else np.concatenate(masks)


def load_prepared(entry: Path) -> PreparedData | None:
    """The entry at `entry` if it is complete and valid, else None."""
    opened = open_entry(Path(entry))
    if opened is None:
        return None
    manifest, shards = opened
    return PreparedData(Path(entry), manifest, tuple(shards), cached=True)


# -- encoders --------------------------------------------------------------------------------------


def _byte_arrays(texts: Sequence[str]) -> list[np.ndarray]:
    return [np.frombuffer(text.encode("utf-8"), dtype=np.uint8) for text in texts]


class _CharArrays:
    """CharTokenizer.encode as a table lookup over code points (ASCII: over bytes)."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        self.tokenizer = tokenizer
        n = len(tokenizer.chars)  # ids of characters; an end-of-text id, if any, is n
        dtype = np.uint16 if n + 1 < 1 << 16 else np.uint32
        points = np.array([ord(c) for c in tokenizer.chars], dtype=np.int64)
        # Unknown characters map to n, an id no character has: one max() finds them.
        self.table = np.full(int(points.max(initial=0)) + 2, n, dtype=dtype)
        self.table[points] = np.arange(n, dtype=dtype)
        self.ascii = np.full(128, n, dtype=dtype)
        low = points[points < 128]
        self.ascii[low] = self.table[low]
        # Small vocabularies (ids and the unknown marker fit a byte): bytes.translate maps
        # ASCII text at memory speed.
        self.translate = bytes(self.ascii.tolist() + [n] * 128) if n < 255 else None
        self.unknown = n

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        out = []
        for text in texts:
            ids: np.ndarray
            if text.isascii():  # O(1) in CPython; then one byte per character
                raw = text.encode("ascii")
                if self.translate is not None:
                    ids = np.frombuffer(raw.translate(self.translate), dtype=np.uint8)
                else:
                    ids = self.ascii[np.frombuffer(raw, dtype=np.uint8)]
            else:
                points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
                ids = np.take(self.table, points, mode="clip")
            if ids.size and int(ids.max()) >= self.unknown:
                self.tokenizer.encode(text)  # raises the DataError that names the characters
                raise DataError("text has characters outside the char tokenizer's vocabulary")
            out.append(ids)
        return out


def array_encoder(tokenizer: ITokenizer) -> ArrayEncoder | None:
    """A vectorised `texts -> [ids array]` for the built-in byte and char tokenizers (exact
    types only: a subclass may encode differently), else None."""
    if type(tokenizer) is ByteTokenizer:
        return _byte_arrays
    if type(tokenizer) is CharTokenizer:
        return _CharArrays(tokenizer)
    return None


def _generic_encoder(tokenizer: ITokenizer) -> ArrayEncoder:
    encode_batch = getattr(tokenizer, "encode_batch", None)
    if callable(encode_batch):
        return lambda texts: [np.asarray(ids, dtype=np.int64) for ids in encode_batch(texts)]
    return lambda texts: [np.asarray(tokenizer.encode(t), dtype=np.int64) for t in texts]


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _Encoder:
    """Turns a task (documents) into one token array, its mask and its byte count."""

    def __init__(self, tokenizer: ITokenizer, dtype: np.dtype[Any], masked: bool) -> None:
        fast = array_encoder(tokenizer)
        # The vectorised encoders only produce ids inside the vocabulary; others are checked.
        self.trusted = fast is not None
        self.arrays = fast or _generic_encoder(tokenizer)
        self.vocab_size = tokenizer.vocab_size
        self.dtype = dtype
        self.masked = masked
        self.eot = tokenizer.eot_id

    def __call__(self, items: Sequence[Item]) -> Encoded:
        texts: list[str] = []
        layout: list[tuple[list[bool], bool]] = []
        for content, end in items:
            if isinstance(content, str):
                texts.append(content)
                layout.append(([True], end))
            else:
                texts.extend(text for text, _ in content)
                layout.append(([trained for _, trained in content], end))
        arrays = self.arrays(texts)
        n_bytes = sum(_utf8_len(t) for t in texts)
        eot = self.eot
        total = sum(len(a) for a in arrays)
        if eot is not None:
            total += sum(end for _, end in layout)
        # One output array, filled in place: no intermediate concatenation or wide copy.
        tokens = np.empty(total, dtype=self.dtype if self.trusted else np.int64)
        mask = np.empty(total, dtype=np.uint8) if self.masked else None
        at = i = 0
        for trained, end in layout:
            for flag in trained:
                n = len(arrays[i])
                tokens[at : at + n] = arrays[i]
                if mask is not None:
                    mask[at : at + n] = flag
                at += n
                i += 1
            if end and eot is not None:
                tokens[at] = eot
                if mask is not None:  # learn to stop after a trained part, not after a prompt
                    mask[at] = not trained or trained[-1]
                at += 1
        if not self.trusted and total:
            low, high = int(tokens.min()), int(tokens.max())
            if low < 0 or high >= self.vocab_size:
                raise DataError(
                    f"the tokenizer produced id {low if low < 0 else high}, outside its "
                    f"vocabulary of {self.vocab_size}; is its vocab_size right?"
                )
            tokens = tokens.astype(self.dtype)
        return tokens, mask, n_bytes


# -- worker processes ------------------------------------------------------------------------------

_WORKER: _Encoder | None = None


def _init_worker(kind: str, payload: Any, dtype: str, masked: bool) -> None:
    global _WORKER
    # The processes are the parallelism: a Hugging Face tokenizer's own threads would only
    # oversubscribe the cores (the variable is read before its first parallel call).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tokenizer: ITokenizer = load_tokenizer(Path(payload)) if kind == "file" else payload
    _WORKER = _Encoder(tokenizer, np.dtype(dtype), masked)


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


def _worker_tokenizer(tokenizer: ITokenizer, folder: Path) -> tuple[str, Any] | str:
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


def _in_process(tasks: Iterator[list[Item]], encoder: _Encoder) -> Iterator[Encoded]:
    for task in tasks:
        yield encoder(task)


def _in_workers(
    tasks: Iterator[list[Item]], workers: int, spec: tuple[str, Any], dtype: str, masked: bool
) -> Iterator[Encoded]:
    pending: deque[Future[Encoded]] = deque()
    pool = ProcessPoolExecutor(
        workers, mp_context=_context(), initializer=_init_worker, initargs=(*spec, dtype, masked)
    )
    try:
        for task in tasks:
            pending.append(pool.submit(_work, task))
            if len(pending) >= workers * INFLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# -- documents -> tasks ---------------------------------------------------------------------------


@dataclass
class _Counts:
    documents: int = 0
    pieces: int = 0


def _task_chars(total_bytes: int, workers: int) -> int:
    """Tasks small enough that every worker gets several, within [MIN_, TASK_CHARS]."""
    if total_bytes <= 0 or workers <= 1:
        return TASK_CHARS
    return max(MIN_TASK_CHARS, min(TASK_CHARS, total_bytes // (4 * workers)))


def _tasks(
    documents: Iterator[Document], masked: bool, counts: _Counts, task_chars: int = TASK_CHARS
) -> Iterator[list[Item]]:
    task: list[Item] = []
    chars = 0
    for doc in documents:
        end = not doc.metadata.get("continued", False)
        counts.pieces += 1
        counts.documents += end
        content: str | Segments = doc.text
        if masked:
            segments = doc.metadata.get("segments")
            content = [(t, bool(k)) for t, k in segments] if segments else [(doc.text, True)]
        task.append((content, end))
        chars += len(doc.text)
        if chars >= task_chars or len(task) >= TASK_DOCUMENTS:
            yield task
            task, chars = [], 0
    if task:
        yield task


# -- shards ----------------------------------------------------------------------------------------


class _ShardWriter:
    """Appends tokens (and masks) to shard files of at most `shard_tokens` tokens."""

    def __init__(self, folder: Path, shard_tokens: int, masked: bool) -> None:
        self.folder = folder
        self.shard_tokens = shard_tokens
        self.masked = masked
        self.shards: list[dict[str, Any]] = []
        self.tokens = 0
        self.trained = 0
        self._files: list[Any] = []
        self._count = 0

    def write(self, tokens: np.ndarray, mask: np.ndarray | None) -> None:
        self.tokens += len(tokens)
        if mask is not None:
            self.trained += int(np.count_nonzero(mask))
        at = 0
        while at < len(tokens):
            if not self._files:
                name = shard_name(len(self.shards))
                self._files = [(self.folder / f"{name}.bin").open("wb")]
                if self.masked:
                    self._files.append((self.folder / f"{name}.mask").open("wb"))
            take = min(self.shard_tokens - self._count, len(tokens) - at)
            tokens[at : at + take].tofile(self._files[0])
            if mask is not None:
                mask[at : at + take].tofile(self._files[1])
            self._count += take
            at += take
            if self._count == self.shard_tokens:
                self._finish()

    def _finish(self) -> None:
        for f in self._files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        self.shards.append({"file": f"{shard_name(len(self.shards))}.bin", "tokens": self._count})
        self._files, self._count = [], 0

    def close(self) -> list[dict[str, Any]]:
        if self._files:
            self._finish()
        return self.shards

    def abort(self) -> None:
        for f in self._files:
            f.close()
        self._files = []


# -- preparing -------------------------------------------------------------------------------------


def source_parts(source: IDataSource) -> list[tuple[IDataSource, float]]:
    """The weighted parts of a source: a mixture's `(source, weight)` parts, else itself."""
    parts = getattr(source, "parts", None)
    if isinstance(parts, list | tuple) and parts:
        return [(part, float(weight)) for part, weight in parts]
    return [(source, 1.0)]


def _format_of(source: IDataSource, data_format: str | None) -> str:
    found = data_format or getattr(source, "format", None) or "text"
    if found not in DATA_FORMATS:
        raise ValueError(f"data format must be one of {DATA_FORMATS}, got {found!r}")
    return str(found)


def _source_bytes(source: IDataSource) -> int:
    """The size of the files a source reads (0 when it does not say): for progress only."""
    total = 0
    for part, _ in source_parts(source):
        for file in getattr(part, "files", None) or ():
            with contextlib.suppress(OSError):
                total += Path(file).stat().st_size
    return total


def _report_of(source: IDataSource) -> dict[str, Any] | None:
    report = getattr(source, "report", None)
    summary = getattr(report, "summary", None)
    if not callable(summary):
        return None
    return {
        "summary": str(summary()),
        "undecodable": list(getattr(report, "undecodable", [])),
        "replaced": list(getattr(report, "replaced", [])),
        "bad_lines": len(getattr(report, "bad_lines", [])),
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_dead_builds(root: Path, key: str) -> None:
    """Temporary folders of this key left by processes that no longer run."""
    for path in root.glob(f"{TMP_PREFIX}{key}-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def prepare_source(
    source: IDataSource,
    tokenizer: ITokenizer,
    cache_root: Path,
    *,
    workers: int = os.cpu_count() or 1,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    progress: Progress | None = None,
    data_format: str | None = None,
) -> PreparedData:
    """The cache entry of `source`'s tokens under `cache_root`: found, or built now.

    `source` is read as one stream (a mixture's parts one after another; training prepares
    each part on its own with `prepare_parts`). `data_format` defaults to the source's
    `format` attribute, else "text"; "prompt_response" adds the loss masks. `progress(done,
    total)` is called as text is tokenized, in UTF-8 bytes (total: the size of the source's
    files, 0 when unknown). Raises DataError for an empty corpus or a tokenizer error.
    """
    if shard_tokens <= 0:
        raise ValueError(f"shard_tokens must be positive, got {shard_tokens}")
    fmt = _format_of(source, data_format)
    root = Path(cache_root)
    fingerprints = (source.fingerprint(), tokenizer.fingerprint())
    key = key_of(*fingerprints, fmt)
    final = root / key
    found = load_prepared(final)
    if found is not None:
        log.info("token_cache.hit", key=key[:16], tokens=found.num_tokens, source=source.describe())
        if progress is not None:
            progress(found.num_bytes, found.num_bytes)
        return found
    root.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(root, key)
    tmp = root / f"{TMP_PREFIX}{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = _build(
            tmp, key, fmt, source, tokenizer, fingerprints, max(1, workers), shard_tokens, progress
        )
        try:
            os.replace(tmp, final)
        except OSError:
            # The name is taken: by another process that finished first (use theirs), or by a
            # broken leftover of a crash or an older version (replace it).
            if load_prepared(final) is None:
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "token_cache.build",
        key=key[:16],
        tokens=manifest["tokens"],
        shards=len(manifest["shards"]),
        seconds=manifest["seconds"],
        source=source.describe(),
    )
    opened = open_entry(final)
    if opened is None:  # pragma: no cover - only if the folder vanished under us
        raise DataError(f"token cache entry {final} disappeared right after it was built")
    return PreparedData(final, opened[0], tuple(opened[1]), cached=False)


def _build(
    tmp: Path,
    key: str,
    fmt: str,
    source: IDataSource,
    tokenizer: ITokenizer,
    fingerprints: tuple[str, str],
    workers: int,
    shard_tokens: int,
    progress: Progress | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    dtype = np.dtype(token_dtype(tokenizer.vocab_size))
    masked = fmt == "prompt_response"
    try:
        tokenizer.save(tmp / "tokenizer.json")
    except Exception as exc:  # a user's tokenizer may not save; workers then get a pickle
        log.info("token_cache.tokenizer_not_saved", error=str(exc))
    counts = _Counts()
    total = _source_bytes(source)
    spec = None
    if workers > 1 and array_encoder(tokenizer) is None:
        found = _worker_tokenizer(tokenizer, tmp)
        if isinstance(found, str):
            log.warning("token_cache.single_process", reason=found)
        else:
            spec = found
    task_chars = _task_chars(total, workers if spec is not None else 1)
    tasks = _tasks(source.documents(), masked, counts, task_chars)
    results: Iterator[Encoded]
    used = 1
    if spec is not None:
        first = list(_take(tasks, 2))
        if len(first) < 2:  # one task: starting workers would only cost time
            results = _in_process(iter(first), _Encoder(tokenizer, dtype, masked))
        else:
            results = _in_workers(_chain(first, tasks), workers, spec, dtype.name, masked)
            used = workers
    else:
        results = _in_process(tasks, _Encoder(tokenizer, dtype, masked))
    writer = _ShardWriter(tmp, shard_tokens, masked)
    done = 0
    try:
        for tokens, mask, n_bytes in results:
            writer.write(tokens, mask)
            done += n_bytes
            if progress is not None:
                progress(done, max(total, done))
        shards = writer.close()
    finally:
        writer.abort()
        close = getattr(results, "close", None)
        if callable(close):  # stops the workers at once if writing failed
            close()
    if writer.tokens == 0:
        raise DataError(f"{source.describe()} has no tokens (empty files?); check data.path")
    if progress is not None:
        progress(done, done)
    manifest: dict[str, Any] = {
        "format_version": CACHE_FORMAT_VERSION,
        "key": key,
        "data_format": fmt,
        "dtype": dtype.name,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        "has_mask": masked,
        "shards": shards,
        "shard_tokens": shard_tokens,
        "documents": counts.documents,
        "pieces": counts.pieces,
        "bytes": done,
        "tokens": writer.tokens,
        "trained_tokens": writer.trained if masked else writer.tokens,
        "source": source.describe(),
        "source_fingerprint": fingerprints[0],
        "tokenizer_fingerprint": fingerprints[1],
        "read_report": _report_of(source),
        "workers": used,
        "seconds": round(time.perf_counter() - started, 3),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_json(tmp / MANIFEST, manifest)  # last: the entry is complete from here on
    return manifest


def _take(items: Iterator[list[Item]], n: int) -> Iterator[list[Item]]:
    for _ in range(n):
        item = next(items, None)
        if item is None:
            return
        yield item


def _chain(first: list[list[Item]], rest: Iterator[list[Item]]) -> Iterator[list[Item]]:
    yield from first
    yield from rest


def prepare_parts(
    source: IDataSource,
    tokenizer: ITokenizer,
    cache_root: Path,
    *,
    workers: int = os.cpu_count() or 1,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    progress: Progress | None = None,
    data_format: str | None = None,
) -> list[tuple[PreparedData, float]]:
    """`prepare_source` for each weighted part of `source` (a mixture's parts, else the source
    itself): the entries training reads. Each part has its own entry, so changing one part
    re-tokenizes only that part. `progress` counts over all parts."""
    parts = source_parts(source)
    total = _source_bytes(source)
    done = 0
    prepared: list[tuple[PreparedData, float]] = []
    for part, weight in parts:
        offset = done

        def report(n: int, _: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + n, max(total, offset + n))

        entry = prepare_source(
            part,
            tokenizer,
            cache_root,
            workers=workers,
            shard_tokens=shard_tokens,
            progress=report,
            data_format=data_format,
        )
        done += entry.num_bytes
        prepared.append((entry, weight))
    return prepared
