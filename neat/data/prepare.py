"""Tokenize a source into a sharded, content-keyed token cache (`neat data prepare`).

Documents are streamed (the corpus is never held whole), grouped into tasks of a few MiB of
text, tokenized (`neat.data.encode`: in this process for the byte and char tokenizers, else in
`neat.data.workers` processes) and appended in document order to shard files of at most
`shard_tokens` tokens (`neat.data.shards`). The entry is built in a temporary folder and
renamed into place once complete; SIGTERM or Ctrl-C while building removes the folder and
stops the workers (PrepareInterrupted), and a folder left by kill -9 is removed by the next
build of the same key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from neat.data.cache import (
    CACHE_FORMAT_VERSION,
    DATA_FORMATS,
    MANIFEST,
    TMP_PREFIX,
    PreparedData,
    cache_key,
    key_of,
    load_prepared,
    open_entry,
    token_dtype,
)
from neat.data.encode import Counts, Encoded, Encoder, Item, array_encoder, task_chars, tasks
from neat.data.shards import ShardWriter
from neat.data.workers import (
    PrepareInterrupted,
    in_process,
    in_workers,
    stop_on_signals,
    worker_tokenizer,
)
from neat.errors import DataError
from neat.files import pid_alive, write_json_atomic
from neat.interfaces import (
    IDataSource,
    IFileSource,
    IFormattedSource,
    IMixtureSource,
    ITokenizer,
)

__all__ = [
    "DEFAULT_SHARD_TOKENS",
    "PrepareInterrupted",
    "PreparedData",
    "TokenCache",
    "array_encoder",
    "load_prepared",
    "prepare_parts",
    "prepare_source",
    "source_parts",
]

log = structlog.get_logger(__name__)

DEFAULT_SHARD_TOKENS = 64 << 20  # 128 MiB shards of uint16

Progress = Callable[[int, int], None]


def source_parts(source: IDataSource) -> list[tuple[IDataSource, float]]:
    """The weighted parts of a source: a mixture's `(source, weight)` parts, else itself."""
    if isinstance(source, IMixtureSource) and source.parts:
        return [(part, float(weight)) for part, weight in source.parts]
    return [(source, 1.0)]


def _format_of(source: IDataSource, data_format: str | None) -> str:
    found = data_format or (source.format if isinstance(source, IFormattedSource) else "text")
    if found not in DATA_FORMATS:
        raise ValueError(f"data format must be one of {DATA_FORMATS}, got {found!r}")
    return str(found)


def _source_bytes(source: IDataSource) -> int:
    """The size of the files a source reads (0 when it does not say): for progress only."""
    total = 0
    for part, _ in source_parts(source):
        for file in part.files if isinstance(part, IFileSource) else ():
            with contextlib.suppress(OSError):
                total += Path(file).stat().st_size
    return total


def _report_of(source: IDataSource) -> dict[str, Any] | None:
    if not isinstance(source, IFileSource):
        return None
    report = source.report
    return {
        "summary": report.summary(),
        "undecodable": list(report.undecodable),
        "replaced": list(report.replaced),
        "bad_lines": len(report.bad_lines),
    }


def _remove_dead_builds(root: Path, key: str) -> None:
    """Temporary folders of this key left by processes that no longer run."""
    for path in root.glob(f"{TMP_PREFIX}{key}-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


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
    files, 0 when unknown). Raises DataError for an empty corpus or a tokenizer error, and
    PrepareInterrupted for SIGTERM or Ctrl-C (after stopping the workers and removing the
    partial entry).
    """
    if shard_tokens <= 0:
        raise ValueError(f"shard_tokens must be positive, got {shard_tokens}")
    with stop_on_signals():
        return _prepare(
            source,
            tokenizer,
            Path(cache_root),
            max(1, workers),
            shard_tokens,
            progress,
            _format_of(source, data_format),
        )


def _prepare(
    source: IDataSource,
    tokenizer: ITokenizer,
    root: Path,
    workers: int,
    shard_tokens: int,
    progress: Progress | None,
    fmt: str,
) -> PreparedData:
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
            tmp, key, fmt, source, tokenizer, fingerprints, workers, shard_tokens, progress
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
    counts = Counts()
    total = _source_bytes(source)
    spec = None
    if workers > 1 and array_encoder(tokenizer) is None:
        found = worker_tokenizer(tokenizer, tmp)
        if isinstance(found, str):
            log.warning("token_cache.single_process", reason=found)
        else:
            spec = found
    chars = task_chars(total, workers if spec is not None else 1)
    work = tasks(source.documents(), masked, counts, chars)
    results: Iterator[Encoded]
    used = 1
    if spec is not None:
        first = list(_take(work, 2))
        if len(first) < 2:  # one task: starting workers would only cost time
            results = in_process(iter(first), Encoder(tokenizer, dtype, masked))
        else:
            results = in_workers(_chain(first, work), workers, spec, dtype.name, masked)
            used = workers
    else:
        results = in_process(work, Encoder(tokenizer, dtype, masked))
    writer = ShardWriter(tmp, shard_tokens, masked)
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
    if writer.tokens == 0 or done == 0:  # end-of-text ids alone are no text to train on
        raise DataError(
            f"{source.describe()} is empty: no tokens of text to train on; check data.path"
        )
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
    write_json_atomic(tmp / MANIFEST, manifest)  # last: the entry is complete from here on
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


class TokenCache:
    """A cache root: look entries up by (source, tokenizer, format), or prepare them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(self, source: IDataSource, tokenizer: ITokenizer, data_format: str = "text") -> str:
        return cache_key(source, tokenizer, data_format)

    def get(
        self, source: IDataSource, tokenizer: ITokenizer, data_format: str = "text"
    ) -> PreparedData | None:
        """The complete entry for these tokens, or None (nothing is built)."""
        return load_prepared(self.root / self.key(source, tokenizer, data_format))

    def prepare(
        self,
        source: IDataSource,
        tokenizer: ITokenizer,
        *,
        workers: int | None = None,
        shard_tokens: int | None = None,
        progress: Progress | None = None,
        data_format: str | None = None,
    ) -> PreparedData:
        """`prepare_source` into this root."""
        return prepare_source(
            source,
            tokenizer,
            self.root,
            workers=workers if workers is not None else (os.cpu_count() or 1),
            shard_tokens=shard_tokens if shard_tokens is not None else DEFAULT_SHARD_TOKENS,
            progress=progress,
            data_format=data_format,
        )
