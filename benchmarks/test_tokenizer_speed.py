"""Encode and decode MB/s of neat's char, byte and BPE tokenizers against the closest thing a
user would write without neat, on the same documents, in the same run.

The corpus is tiny Shakespeare repeated to ~8 MB (once for BPE: see COPIES) in ~140 kB
documents. neat is timed through `encode_batch` (the call the data pipeline makes) and
`decode` per document. The baselines:

- byte: `list(text.encode("utf-8"))` (the same list neat returns) and
  `np.frombuffer(text.encode("utf-8"), np.uint8)`; decode `bytes(ids).decode("utf-8")`.
- char: nanoGPT's `[stoi[c] for c in s]` and `"".join([itos[i] for i in ids])`.
- bpe: the `tokenizers.Tokenizer` loaded from the same tokenizer.json, called directly:
  `encode_batch` (with offsets, as most users call it), `encode_batch_fast` (what neat calls)
  and `decode`.

neat's decode does more than the baselines (it range-checks every id, and drops end-of-text
ids or invalid UTF-8 instead of failing), and its char encode keeps a try block for a clear
unseen-character error. The ratio is neat MB/s / baseline MB/s (1.0: as fast as by hand).
Rounds interleave neat and its baselines; the medians are compared. Round trips are asserted,
timings are not.

    python -m pytest benchmarks/test_tokenizer_speed.py --benchmark-only -s
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from neat.data import ByteTokenizer, CharTokenizer, HFTokenizer, train_bpe

SHAKESPEARE = Path(__file__).resolve().parents[1] / "examples" / "data" / "tinyshakespeare.txt"
# Copies of the 1.1 MB corpus: ~8 MB for the fast tokenizers; one for BPE, which runs at only
# ~2 MB/s on a 2-core machine (8 MB would take ~3 minutes for the rounds below).
COPIES = {"byte": 8, "char": 8, "bpe": 1}
DOCUMENTS_PER_COPY = 8
BPE_VOCAB = 4096
ROUNDS = 5

Docs = list[str]
Ids = list[list[int]]
NeatTokenizer = ByteTokenizer | CharTokenizer | HFTokenizer


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return SHAKESPEARE.read_text(encoding="utf-8")


def _documents(text: str, copies: int) -> Docs:
    """`copies` of the corpus in pieces of ~140 kB (cut anywhere: all three round-trip)."""
    text *= copies
    size = -(-len(text) // (copies * DOCUMENTS_PER_COPY))
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.fixture(scope="module")
def bpe(shakespeare: str) -> HFTokenizer:
    """Trained once per module on the corpus, as `neat data tokenizer train` trains it
    (`train_bpe`: byte-level, GPT-2 style)."""
    return train_bpe([shakespeare], vocab_size=BPE_VOCAB)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _neat_tokenizer(kind: str, docs: Docs, bpe: HFTokenizer) -> NeatTokenizer:
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.fit(docs)
    return bpe


def _baselines(
    kind: str, neat: NeatTokenizer, docs: Docs, ids: Ids
) -> tuple[dict[str, Callable[[], Sequence[Any]]], tuple[str, Callable[[], list[str]]]]:
    """The hand-written encoders for `kind` (name -> call) and its decoder (name, call)."""
    if kind == "byte":
        return {
            "list(text.encode())": lambda: [list(doc.encode("utf-8")) for doc in docs],
            "np.frombuffer(text.encode())": lambda: [
                np.frombuffer(doc.encode("utf-8"), dtype=np.uint8) for doc in docs
            ],
        }, ("bytes(ids).decode()", lambda: [bytes(doc_ids).decode("utf-8") for doc_ids in ids])
    if kind == "char":
        assert isinstance(neat, CharTokenizer)
        stoi = {ch: i for i, ch in enumerate(neat.chars)}
        itos = dict(enumerate(neat.chars))
        return {"[stoi[c] for c in s]": lambda: [[stoi[c] for c in doc] for doc in docs]}, (
            "''.join([itos[i] for i in ids])",
            lambda: ["".join([itos[i] for i in doc_ids]) for doc_ids in ids],
        )
    assert isinstance(neat, HFTokenizer)
    raw = Tokenizer.from_str(neat.hf_tokenizer.to_str())  # what loading tokenizer.json gives
    return {
        "Tokenizer.encode_batch": lambda: [
            e.ids for e in raw.encode_batch(docs, add_special_tokens=False)
        ],
        "Tokenizer.encode_batch_fast": lambda: [
            e.ids for e in raw.encode_batch_fast(docs, add_special_tokens=False)
        ],
    }, (
        "Tokenizer.decode",
        lambda: [raw.decode(doc_ids, skip_special_tokens=False) for doc_ids in ids],
    )


@pytest.mark.benchmark(group="tokenizer-speed")
@pytest.mark.parametrize("kind", ["byte", "char", "bpe"])
def test_tokenizer_speed_vs_raw(
    benchmark: Any, shakespeare: str, bpe: HFTokenizer, kind: str
) -> None:
    documents = _documents(shakespeare, COPIES[kind])
    tokenizer = _neat_tokenizer(kind, documents, bpe)
    ids: Ids = tokenizer.encode_batch(documents)
    encoders, (decoder_name, decoder) = _baselines(kind, tokenizer, documents, ids)

    # Sanity (and warm-up: allocator, the tokenizers thread pool): neat round-trips, and every
    # baseline gives the same ids and the same text.
    assert [tokenizer.decode(doc_ids) for doc_ids in ids] == documents
    for encode in encoders.values():
        assert [[int(i) for i in doc_ids] for doc_ids in encode()] == ids
    assert decoder() == documents

    def neat_encode() -> object:
        return tokenizer.encode_batch(documents)

    def neat_decode() -> list[str]:
        return [tokenizer.decode(doc_ids) for doc_ids in ids]

    calls: dict[str, Callable[[], object]] = {"neat encode": neat_encode}
    calls.update({f"{name} encode": encode for name, encode in encoders.items()})
    calls.update({"neat decode": neat_decode, f"{decoder_name} decode": decoder})
    times: dict[str, list[float]] = {name: [] for name in calls}

    def interleaved_round() -> None:
        for name, call in calls.items():
            times[name].append(_timed(call))

    benchmark.pedantic(interleaved_round, rounds=ROUNDS, iterations=1)

    megabytes = sum(len(doc.encode("utf-8")) for doc in documents) / 1e6
    mbs = {name: megabytes / statistics.median(series) for name, series in times.items()}
    ratios = {f"encode vs {name}": mbs["neat encode"] / mbs[f"{name} encode"] for name in encoders}
    ratios[f"decode vs {decoder_name}"] = mbs["neat decode"] / mbs[f"{decoder_name} decode"]
    tokens = sum(len(doc_ids) for doc_ids in ids)
    benchmark.extra_info.update(
        {
            "tokenizer": kind,
            "corpus_mb": megabytes,
            "documents": len(documents),
            "tokens": tokens,
            "vocab_size": tokenizer.vocab_size,
            "mb_per_s": mbs,
            "ratio_neat_over_baseline": ratios,
            "times_s": times,
        }
    )
    lines = [
        f"\n{kind} (vocab {tokenizer.vocab_size}, {megabytes:.1f} MB in {len(documents)} "
        f"documents, {tokens:,} tokens; median of {ROUNDS} interleaved rounds)"
    ]
    for name, rate in mbs.items():
        side = "encode" if name.endswith("encode") else "decode"
        baseline = name.removesuffix(f" {side}")
        ratio = "" if baseline == "neat" else f"  neat/this {ratios[f'{side} vs {baseline}']:.3f}"
        lines.append(f"  {name:<42} {rate:>8,.1f} MB/s{ratio}")
    print("\n".join(lines))
