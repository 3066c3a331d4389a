"""The token cache: content keys, reuse, crash safety, manifests, dtype."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neat.data import (
    ByteTokenizer,
    CharTokenizer,
    TextFileSource,
    TokenCache,
    cache_key,
    default_cache_dir,
    load_prepared,
    prepare_source,
)
from neat.data.cache import CACHE_FORMAT_VERSION, MANIFEST
from neat.errors import DataError


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("hello", encoding="utf-8")
    (folder / "b.txt").write_text("héllo!", encoding="utf-8")
    return folder


def test_tokens_in_document_order_with_eot(tmp_path: Path, corpus: Path) -> None:
    prepared = prepare_source(TextFileSource([str(corpus)]), ByteTokenizer(), tmp_path / "cache")
    expected = [*b"hello", 256, *"héllo!".encode(), 256]
    assert prepared.tokens().tolist() == expected
    assert prepared.dtype == np.uint16 and prepared.tokens().dtype == np.uint16
    assert not prepared.tokens().flags.writeable
    assert (prepared.documents, prepared.num_bytes, prepared.num_tokens) == (2, 12, 14)
    assert not prepared.cached and not prepared.has_mask
    assert [p.name for p in sorted(prepared.path.iterdir())] == [
        MANIFEST,
        "shard_00000.bin",
        "tokenizer.json",
    ]


def test_char_tokens_have_no_separator(tmp_path: Path, corpus: Path) -> None:
    source = TextFileSource([str(corpus)])
    tok = CharTokenizer.fit(d.text for d in source.documents())
    prepared = prepare_source(source, tok, tmp_path / "cache")
    assert tok.decode(prepared.tokens().tolist()) == "hellohéllo!"


def test_second_call_is_a_hit(counting_source: type[Any], tmp_path: Path, corpus: Path) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    first = prepare_source(source, ByteTokenizer(), tmp_path / "cache")
    shard = first.path / "shard_00000.bin"
    mtime = shard.stat().st_mtime_ns
    # A new call, as a second process would make, reuses the entry.
    second = TokenCache(tmp_path / "cache").prepare(source, ByteTokenizer())
    assert source.reads == 1 and second.cached
    assert shard.stat().st_mtime_ns == mtime
    assert np.array_equal(first.tokens(), second.tokens())
    manifest = json.loads((first.path / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["format_version"] == CACHE_FORMAT_VERSION
    assert manifest["tokens"] == len(first.tokens()) and manifest["dtype"] == "uint16"
    assert manifest["shards"] == [{"file": "shard_00000.bin", "tokens": 14}]
    assert manifest["tokenizer_fingerprint"] == ByteTokenizer().fingerprint()
    assert manifest["source_fingerprint"] == source.fingerprint()
    assert first.path.name == cache_key(source, ByteTokenizer(), "text")


def test_changed_content_or_tokenizer_gets_new_key(tmp_path: Path, corpus: Path) -> None:
    source = TextFileSource([str(corpus)])
    root = tmp_path / "cache"
    key = cache_key(source, ByteTokenizer())
    assert cache_key(source, CharTokenizer(["h"])) != key
    assert cache_key(source, ByteTokenizer(), "prompt_response") != key
    prepare_source(source, ByteTokenizer(), root)
    (corpus / "a.txt").write_text("HELLO", encoding="utf-8")
    assert cache_key(source, ByteTokenizer()) != key
    rebuilt = prepare_source(source, ByteTokenizer(), root)
    assert not rebuilt.cached and rebuilt.tokens()[:5].tolist() == list(b"HELLO")
    entries = [p.name for p in root.iterdir()]
    assert len(entries) == 2 and not any(name.startswith(".tmp") for name in entries)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_interrupted_builds_are_not_used(
    counting_source: type[Any], tmp_path: Path, corpus: Path
) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    root = tmp_path / "cache"
    key = cache_key(source, ByteTokenizer())
    # A crashed build in another process: only its private temporary folder exists, and it
    # looks complete (it even has a manifest).
    stale = root / f".tmp-{key}-{_dead_pid()}"
    stale.mkdir(parents=True)
    (stale / "shard_00000.bin").write_bytes(b"\0\0")
    (stale / MANIFEST).write_text("{}", encoding="utf-8")
    assert load_prepared(stale) is None
    # A final-named folder without a manifest (e.g. copied by hand, or an old bug).
    (root / key).mkdir()
    (root / key / "shard_00000.bin").write_bytes(b"\1\0" * 4)
    assert load_prepared(root / key) is None
    prepared = prepare_source(source, ByteTokenizer(), root)
    assert source.reads == 1 and not prepared.cached  # it rebuilt
    assert prepared.tokens().tolist()[:5] == list(b"hello")
    assert (root / key / MANIFEST).is_file()
    assert sorted(p.name for p in root.iterdir()) == [key]  # the dead build's folder is gone


def test_build_of_a_live_process_is_left_alone(tmp_path: Path, corpus: Path) -> None:
    source = TextFileSource([str(corpus)])
    root = tmp_path / "cache"
    live = root / f".tmp-{cache_key(source, ByteTokenizer())}-{os.getppid()}"
    live.mkdir(parents=True)
    prepare_source(source, ByteTokenizer(), root)
    assert live.is_dir()


@pytest.mark.parametrize("damage", ["truncate", "delete", "version", "count", "garbage"])
def test_entry_not_matching_its_manifest_is_rebuilt(
    counting_source: type[Any], tmp_path: Path, corpus: Path, damage: str
) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    n = prepare_source(source, ByteTokenizer(), tmp_path / "cache").num_tokens
    entry = tmp_path / "cache" / cache_key(source, ByteTokenizer())
    manifest_path = entry / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if damage == "truncate":  # by a full disk, say
        with (entry / "shard_00000.bin").open("r+b") as f:
            f.truncate(4)
    elif damage == "delete":
        (entry / "shard_00000.bin").unlink()
    elif damage == "version":
        manifest["format_version"] = "0"
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    elif damage == "count":
        manifest["tokens"] += 1
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    else:
        manifest_path.write_text("{not json", encoding="utf-8")
    assert load_prepared(entry) is None
    assert prepare_source(source, ByteTokenizer(), tmp_path / "cache").num_tokens == n
    assert source.reads == 2


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    source = TextFileSource([str(tmp_path / "empty.txt")])
    with pytest.raises(DataError, match=r"empty\.txt.*no tokens"):
        prepare_source(source, CharTokenizer(["a"]), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


class WideTokenizer:
    """A fake tokenizer with a vocabulary past uint16: each character -> 70,000 + its index
    in the alphabet (implements the ITokenizer protocol, nothing more)."""

    alphabet = "abcdefghijklmnopqrstuvwxyz "

    @property
    def vocab_size(self) -> int:
        return 70_000 + len(self.alphabet) + 1

    @property
    def eot_id(self) -> int | None:
        return 70_000 + len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        return [70_000 + self.alphabet.index(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.alphabet[i - 70_000] for i in ids if i != self.eot_id)

    def token_bytes(self) -> list[int]:
        return [1] * self.vocab_size

    def fingerprint(self) -> str:
        return "wide-tokenizer-1"

    def save(self, path: Path) -> None:
        raise NotImplementedError("nothing to save")


def test_large_vocab_uses_uint32(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_text("hello world", encoding="utf-8")
    tok = WideTokenizer()
    prepared = prepare_source(TextFileSource([str(path)]), tok, tmp_path / "cache")
    assert prepared.dtype == np.uint32 and prepared.manifest["dtype"] == "uint32"
    assert (prepared.path / "shard_00000.bin").stat().st_size == 4 * 12
    assert prepared.tokens().tolist() == [*tok.encode("hello world"), tok.eot_id]
    assert tok.decode(prepared.tokens().tolist()) == "hello world"


def test_char_vocab_past_uint16_uses_uint32(tmp_path: Path) -> None:
    text = "".join(chr(0x10000 + i) for i in range(70_000))  # no surrogates: valid UTF-8
    tok = CharTokenizer.fit([text])
    assert tok.vocab_size > 65_536
    path = tmp_path / "wide.txt"
    path.write_text(text[-10:], encoding="utf-8")
    prepared = prepare_source(TextFileSource([str(path)]), tok, tmp_path / "cache")
    assert prepared.dtype == np.uint32
    assert tok.decode(prepared.tokens().tolist()) == text[-10:]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEAT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NEAT_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "neat"
