"""Tokenization throughput of `prepare_source` (what `neat data prepare` runs) against calling
the tokenizer directly on the same text, in the same run.

prepare_source does everything a real prepare does: hashes the corpus for the cache key, reads
and decodes the files, tokenizes, and writes (and fsyncs) the shards and the manifest. The
direct call only tokenizes text already in memory (`encode_batch` where the tokenizer has it).
Rounds interleave the two and the medians are compared.

    python -m pytest benchmarks/test_data_throughput.py --benchmark-only -s

Targets (issue 3): BPE ratio >= 0.9; byte and char >= 200 MB/s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from neat.data import (
    ByteTokenizer,
    CharTokenizer,
    TextFileSource,
    prepare_source,
    train_bpe,
)
from neat.interfaces import ITokenizer

SHAKESPEARE = Path(__file__).resolve().parents[1] / "examples" / "data" / "tinyshakespeare.txt"
# Enough text and rounds for stable timings: memory-speed tokenizers get more text, the slow
# BPE more rounds (its timings move with whatever else the machine runs).
CORPUS_MB = {"byte": 64, "char": 64, "bpe": 16}
ROUNDS = {"byte": 3, "char": 3, "bpe": 5}
FILE_BYTES = 1 << 20
BPE_VOCAB = 8192


def _corpus(folder: Path, megabytes: int) -> list[str]:
    """`megabytes` files of ~1 MiB: rotations of tiny Shakespeare (plain ASCII)."""
    text = SHAKESPEARE.read_text(encoding="utf-8")
    folder.mkdir(parents=True)
    texts = []
    for i in range(megabytes):
        shift = (i * 7919) % len(text)
        piece = (text[shift:] + text[:shift])[:FILE_BYTES]
        (folder / f"part_{i:04d}.txt").write_text(piece, encoding="utf-8")
        texts.append(piece)
    return texts


def _tokenizer(kind: str, texts: list[str]) -> ITokenizer:
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.fit(texts)
    return train_bpe(texts[:2], vocab_size=BPE_VOCAB)


def _direct(tokenizer: ITokenizer, texts: list[str]) -> float:
    encode_batch = getattr(tokenizer, "encode_batch", None)
    start = time.perf_counter()
    if callable(encode_batch):
        encode_batch(texts)
    else:
        for text in texts:
            tokenizer.encode(text)
    return time.perf_counter() - start


@pytest.mark.benchmark(group="data-prepare-throughput")
@pytest.mark.parametrize("kind", ["byte", "char", "bpe"])
def test_prepare_throughput_vs_direct_tokenizer(benchmark: Any, tmp_path: Path, kind: str) -> None:
    texts = _corpus(tmp_path / "corpus", CORPUS_MB[kind])
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    tokenizer = _tokenizer(kind, texts)
    workers = os.cpu_count() or 1
    direct_times: list[float] = []
    prepare_times: list[float] = []
    single_times: list[float] = []  # bpe only: workers=1, encode_batch in this process
    rounds = iter(range(1000))

    def prepare_once(workers: int) -> float:
        root = tmp_path / f"cache-{next(rounds)}"
        start = time.perf_counter()
        prepared = prepare_source(
            TextFileSource([str(tmp_path / "corpus")]), tokenizer, root, workers=workers
        )
        seconds = time.perf_counter() - start
        assert not prepared.cached and prepared.num_bytes == round(megabytes * 1e6)
        shutil.rmtree(root)
        return seconds

    def interleaved_round() -> None:
        direct_times.append(_direct(tokenizer, texts))
        prepare_times.append(prepare_once(workers))
        if kind == "bpe":
            single_times.append(prepare_once(1))

    os.sync()  # the corpus just written: its write-back must not land in a timed round
    _direct(tokenizer, texts)  # warm-up: caches, allocator, the tokenizer's thread pool
    prepare_once(workers)
    benchmark.pedantic(interleaved_round, rounds=ROUNDS[kind], iterations=1)
    direct_mbs = megabytes / statistics.median(direct_times)
    prepare_mbs = megabytes / statistics.median(prepare_times)
    ratio = prepare_mbs / direct_mbs
    benchmark.extra_info.update(
        {
            "tokenizer": kind,
            "corpus_mb": megabytes,
            "workers": workers,
            "prepare_mb_per_s": prepare_mbs,
            "direct_mb_per_s": direct_mbs,
            "ratio_prepare_over_direct": ratio,
            "prepare_times_s": prepare_times,
            "direct_times_s": direct_times,
        }
    )
    single = ""
    if single_times:
        single_mbs = megabytes / statistics.median(single_times)
        benchmark.extra_info["prepare_1_worker_mb_per_s"] = single_mbs
        benchmark.extra_info["ratio_1_worker_over_direct"] = single_mbs / direct_mbs
        single = f"; with workers=1 {single_mbs:,.2f} MB/s, ratio {single_mbs / direct_mbs:.3f}"
    print(
        f"\n{kind}: prepare_source {prepare_mbs:,.2f} MB/s, tokenizer directly "
        f"{direct_mbs:,.2f} MB/s, ratio {ratio:.3f} ({megabytes:.0f} MB, {workers} workers, "
        f"median of {ROUNDS[kind]} interleaved rounds){single}"
    )
    if kind == "bpe":
        assert ratio >= 0.9, f"prepare is {100 * (1 - ratio):.0f}% slower than encode_batch"
    else:
        assert prepare_mbs >= 200, f"{kind} prepare runs at {prepare_mbs:.0f} MB/s"
