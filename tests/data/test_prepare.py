"""prepare_source: shards equal a direct tokenization, whatever the shard size, the worker count
or how a large file is read; interrupted builds are never used; masks; inspect."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import neat.data.encode as encode_module
from neat.data import (
    ByteTokenizer,
    CharTokenizer,
    HFTokenizer,
    JsonlSource,
    MixtureSource,
    PreparedData,
    TextFileSource,
    cache_key,
    inspect_data,
    load_prepared,
    prepare_parts,
    prepare_source,
    train_bpe,
)
from neat.data.cache import MANIFEST
from neat.errors import DataError
from neat.interfaces import ITokenizer

LINES = [
    "First Citizen: Before we proceed any further, hear me speak.",
    "  indented line, then trailing spaces   ",
    "héllo wörld ✓ — ünïcödé straddles block ends",
    "",
    "All: Speak, speak.",
    "\tTabbed:\t1234 5678",
]


def _text(n_lines: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(LINES[i] for i in rng.integers(0, len(LINES), n_lines)) + "\n"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(6):
        (folder / f"doc{i}.txt").write_text(_text(40 + 30 * i, seed=i), encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def bpe() -> HFTokenizer:
    return train_bpe([_text(2000, seed=9)], vocab_size=320)


def _direct(tokenizer: ITokenizer, source: Any) -> list[int]:
    ids: list[int] = []
    for doc in source.documents():
        ids.extend(tokenizer.encode(doc.text))
        if tokenizer.eot_id is not None and not doc.metadata.get("continued"):
            ids.append(tokenizer.eot_id)
    return ids


def _tokenizer(kind: str, source: TextFileSource, bpe: HFTokenizer) -> ITokenizer:
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.fit(d.text for d in source.documents())
    return bpe


def _entry_files(prepared: PreparedData) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(prepared.path.iterdir())
        if p.name not in (MANIFEST, "tokenizer.json")
    }


def _stable_manifest(prepared: PreparedData) -> dict[str, Any]:
    volatile = {"workers", "seconds", "created"}
    return {k: v for k, v in prepared.manifest.items() if k not in volatile}


@pytest.mark.parametrize("kind", ["byte", "char", "bpe"])
def test_prepared_shards_equal_a_direct_tokenization(
    tmp_path: Path, corpus: Path, bpe: HFTokenizer, kind: str
) -> None:
    source = TextFileSource([str(corpus)])
    tokenizer = _tokenizer(kind, source, bpe)
    prepared = prepare_source(source, tokenizer, tmp_path / "cache", workers=1)
    assert prepared.tokens().tolist() == _direct(tokenizer, source)
    texts = [d.text for d in source.documents()]
    assert prepared.documents == len(texts) == 7
    assert prepared.num_bytes == sum(len(t.encode()) for t in texts)
    assert prepared.manifest["vocab_size"] == tokenizer.vocab_size
    assert prepared.manifest["eot_id"] == tokenizer.eot_id


@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_shard_boundaries_do_not_change_the_token_stream(
    tmp_path: Path, corpus: Path, bpe: HFTokenizer, kind: str
) -> None:
    source = TextFileSource([str(corpus)])
    tokenizer = _tokenizer(kind, source, bpe)
    whole = prepare_source(source, tokenizer, tmp_path / "a", workers=1)
    small = prepare_source(source, tokenizer, tmp_path / "b", workers=1, shard_tokens=331)
    assert len(whole.shards) == 1
    sizes = [len(s) for s in small.shards]
    assert len(sizes) == -(-whole.num_tokens // 331) > 5
    assert set(sizes[:-1]) == {331} and sizes[-1] <= 331
    assert [s["file"] for s in small.manifest["shards"]][:2] == [
        "shard_00000.bin",
        "shard_00001.bin",
    ]
    assert np.array_equal(small.tokens(), whole.tokens())


class SlowChar(CharTokenizer):
    """A char tokenizer without the vectorised path (a subclass), so workers tokenize it and
    it reaches them as a pickle; same tokens and fingerprint as its parent."""


def test_worker_count_does_not_change_the_cache(
    tmp_path: Path, corpus: Path, bpe: HFTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encode_module, "TASK_DOCUMENTS", 2)  # several tasks from a small corpus
    source = TextFileSource([str(corpus)])
    chars = SlowChar(CharTokenizer.fit(d.text for d in source.documents()).chars)
    for tokenizer in (bpe, chars):  # reaches workers as its file / as a pickle
        one = prepare_source(source, tokenizer, tmp_path / "one", workers=1, shard_tokens=500)
        two = prepare_source(source, tokenizer, tmp_path / "two", workers=2, shard_tokens=500)
        assert (one.manifest["workers"], two.manifest["workers"]) == (1, 2)
        assert _entry_files(one) == _entry_files(two)
        assert _stable_manifest(one) == _stable_manifest(two)
        assert two.tokens().tolist() == _direct(tokenizer, source)


class Unknown(CharTokenizer):
    """Knows too few characters: encoding fails inside a worker."""


def test_tokenizer_error_in_a_worker_leaves_nothing(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encode_module, "TASK_DOCUMENTS", 1)
    source = TextFileSource([str(corpus)])
    with pytest.raises(DataError, match="not in the char tokenizer's vocabulary"):
        prepare_source(source, Unknown(list("abc")), tmp_path / "cache", workers=2)
    assert list((tmp_path / "cache").iterdir()) == []


KILLED_PREPARE = """
import sys, time
from pathlib import Path
import neat.data.encode as encode
import neat.data.prepare as prepare
from neat.data import ByteTokenizer, TextFileSource

class SlowByte(ByteTokenizer):  # same fingerprint as ByteTokenizer, but slow
    def encode_batch(self, texts):
        time.sleep(0.05)
        return [self.encode(t) for t in texts]

encode.TASK_DOCUMENTS = 1
source = TextFileSource([sys.argv[1]])
prepare.prepare_source(source, SlowByte(), Path(sys.argv[2]), workers=1)
"""


def test_killed_prepare_is_never_used_and_a_rerun_completes(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(400):
        (folder / f"{i:03d}.txt").write_text(f"document {i}\n" * 20, encoding="utf-8")
    root = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PREPARE, str(folder), str(root)])
    deadline = time.monotonic() + 60
    while not any(root.glob(".tmp-*/shard_00000.bin")):
        assert proc.poll() is None, "the prepare ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # some tasks written
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    source = TextFileSource([str(folder)])
    key = cache_key(source, ByteTokenizer())
    leftovers = list(root.iterdir())
    assert [p.name for p in leftovers] == [f".tmp-{key}-{proc.pid}"]  # nothing looks complete
    assert load_prepared(leftovers[0]) is None and load_prepared(root / key) is None
    prepared = prepare_source(source, ByteTokenizer(), root)
    assert not prepared.cached and prepared.tokens().tolist() == _direct(ByteTokenizer(), source)
    assert [p.name for p in root.iterdir()] == [key]  # the dead build's folder is cleaned up


@pytest.mark.parametrize("kind", ["byte", "char", "bpe"])
def test_large_file_streamed_in_pieces_gives_the_same_tokens(
    tmp_path: Path, bpe: HFTokenizer, kind: str
) -> None:
    path = tmp_path / "big.txt"
    text = _text(3000, seed=3)  # ~120 kB
    path.write_text(text, encoding="utf-8")
    whole = TextFileSource([str(path)])
    pieces = TextFileSource([str(path)], piece_bytes=4096)
    docs = list(pieces.documents())
    assert len(docs) > 20
    assert "".join(d.text for d in docs) == text
    assert all(d.metadata == {"continued": True} for d in docs[:-1]) and docs[-1].metadata == {}
    assert all(d.text.endswith("\n") for d in docs)
    assert max(len(d.text.encode()) for d in docs) <= 2 * 4096
    tokenizer = _tokenizer(kind, whole, bpe)
    a = prepare_source(whole, tokenizer, tmp_path / "a", workers=1)
    b = prepare_source(pieces, tokenizer, tmp_path / "b", workers=1)
    assert b.manifest["documents"] == 1 and b.manifest["pieces"] == len(docs)
    assert np.array_equal(a.tokens(), b.tokens())
    assert a.key != b.key  # the piece size is part of the source's fingerprint


def test_large_jsonl_streamed_in_pieces(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"text": f"line {i} ✓"}) for i in range(3000)]
    lines[1234] = "{broken"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = JsonlSource([str(path)])
    pieces = JsonlSource([str(path)], piece_bytes=1000)
    assert [d.text for d in pieces.documents()] == [d.text for d in whole.documents()]
    assert pieces.report.bad_lines == whole.report.bad_lines == [f"{path}:1235"]


@pytest.mark.parametrize("policy", ["skip", "replace", "fail"])
def test_large_undecodable_file_follows_the_policy(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "bad.txt"
    raw = b"good line\n" * 2000
    path.write_bytes(raw[:15000] + b"\xff\xfe" + raw[15000:])
    source = TextFileSource([str(path)], on_decode_error=policy, piece_bytes=1024)
    if policy == "fail":
        with pytest.raises(DataError, match=r"bad\.txt.*offset 15000"):
            list(source.documents())
        return
    docs = list(source.documents())
    if policy == "skip":
        assert docs == [] and source.report.undecodable == [str(path)]
    else:
        assert "\ufffd" in "".join(d.text for d in docs) and source.report.replaced == [str(path)]


def test_read_report_and_progress(tmp_path: Path, corpus: Path) -> None:
    (corpus / "binary.txt").write_bytes(b"\0\1\2 not text")
    source = TextFileSource([str(corpus)], on_decode_error="skip")
    calls: list[tuple[int, int]] = []
    prepared = prepare_source(
        source, ByteTokenizer(), tmp_path / "cache", progress=lambda d, t: calls.append((d, t))
    )
    report = prepared.manifest["read_report"]
    assert report["undecodable"] == [str(corpus / "binary.txt")]
    assert "1 binary/non-UTF-8 file(s) skipped" in report["summary"]
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (prepared.num_bytes, prepared.num_bytes)


def _write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_prompt_response_masks_mark_the_trained_tokens(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "sft.jsonl",
        [
            {"prompt": "2+3=", "response": "5"},
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                ]
            },
        ],
    )
    source = JsonlSource([str(path)], format="prompt_response")
    prepared = prepare_source(source, ByteTokenizer(), tmp_path / "cache")
    assert prepared.has_mask and prepared.manifest["data_format"] == "prompt_response"
    assert (prepared.path / "shard_00000.mask").is_file()
    tokens, mask = prepared.tokens().tolist(), prepared.mask()
    assert mask is not None
    expected_tokens: list[int] = []
    expected_mask: list[int] = []
    for doc in source.documents():
        for text, trained in doc.metadata["segments"]:
            expected_tokens.extend(text.encode())
            expected_mask.extend([int(trained)] * len(text.encode()))
        expected_tokens.append(256)
        expected_mask.append(1)  # the model learns to stop after a response
    assert tokens == expected_tokens and mask.tolist() == expected_mask
    assert prepared.manifest["trained_tokens"] == sum(expected_mask)
    # The same file as plain text is another entry, without masks.
    text_source = JsonlSource([str(path)], text_field="prompt", on_bad_line="skip")
    plain = prepare_source(text_source, ByteTokenizer(), tmp_path / "cache")
    assert not plain.has_mask and plain.key != prepared.key


def test_mixture_parts_have_their_own_entries(tmp_path: Path, corpus: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_text("another corpus\n", encoding="utf-8")
    mixture = MixtureSource(
        [(TextFileSource([str(corpus)]), 3.0), (TextFileSource([str(other)]), 1.0)]
    )
    root = tmp_path / "cache"
    first = prepare_parts(mixture, ByteTokenizer(), root)
    assert [w for _, w in first] == [3.0, 1.0] and not any(p.cached for p, _ in first)
    other.write_text("changed corpus\n", encoding="utf-8")
    second = prepare_parts(mixture, ByteTokenizer(), root)
    assert second[0][0].cached and not second[1][0].cached  # only the changed part is redone
    assert bytes(second[1][0].tokens()[:-1].astype(np.uint8)) == b"changed corpus\n"


def test_inspect_reports_counts_and_decoded_samples(tmp_path: Path, corpus: Path) -> None:
    source = TextFileSource([str(corpus)])
    prepared = prepare_source(source, ByteTokenizer(), tmp_path / "cache", shard_tokens=1000)
    info = inspect_data(source, ByteTokenizer(), prepared, samples=3)
    assert info["documents"] == 7 and info["tokens"] == prepared.num_tokens
    assert info["bytes"] == prepared.num_bytes
    assert info["bytes_per_token"] == pytest.approx(prepared.num_bytes / prepared.num_tokens, 1e-3)
    assert info["shards"] == len(prepared.shards) > 1
    assert not info["has_mask"] and info["read_report"] == "no files or lines skipped"
    assert len(info["samples"]) == 3
    first = info["samples"][0]
    assert first["position"] == 0
    assert first["text"] == (corpus / "doc0.txt").read_text(encoding="utf-8")[:200]
    assert all(0 < len(s["text"]) <= 200 for s in info["samples"])
    json.dumps(info)  # JSON-ready for `neat data inspect --json`


@pytest.mark.parametrize("vocab", ["ascii-small", "unicode", "ascii-large"])
def test_vectorised_char_encoder_equals_encode(vocab: str) -> None:
    rng = np.random.default_rng(0)
    alphabet = {
        "ascii-small": [chr(c) for c in range(32, 127)],  # bytes.translate path
        "unicode": [*"abc \n", "é", "✓", "😀", "\ud800"],  # code points (and a lone surrogate)
        "ascii-large": [chr(c) for c in range(1, 128)] + [chr(0x100 + i) for i in range(300)],
    }[vocab]
    tok = CharTokenizer(alphabet)
    encode = encode_module.array_encoder(tok)
    assert encode is not None
    ascii_only = [c for c in alphabet if c.isascii()]
    texts = ["", *("".join(rng.choice(alphabet, size=n)) for n in (1, 17, 500))]
    texts += ["".join(rng.choice(ascii_only, size=300))]  # an ASCII text of a wide vocab
    for text, ids in zip(texts, encode(texts), strict=True):
        assert ids.tolist() == tok.encode(text)
    for unknown in ("\x00", "ß"):
        with pytest.raises(DataError, match="not in the char tokenizer's vocabulary"):
            encode(["abc" + unknown])
    assert encode_module.array_encoder(ByteTokenizer()) is not None
    assert encode_module.array_encoder(SlowChar(alphabet)) is None  # a subclass may differ


def test_vectorised_char_encoder_with_an_end_of_text_id() -> None:
    tok = CharTokenizer(list("ab"), eot=True)
    encode = encode_module.array_encoder(tok)
    assert encode is not None
    assert [ids.tolist() for ids in encode(["abba", ""])] == [tok.encode("abba"), []]
    for unknown in ("c", "é"):  # must not pass as the end-of-text id
        with pytest.raises(DataError, match="not in the char tokenizer's vocabulary"):
            encode([f"ab{unknown}"])
