"""TokenCache: content keys, reuse, crash safety, dtype."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neat.data import ByteTokenizer, CharTokenizer, TextFileSource, TokenCache, default_cache_dir
from neat.errors import DataError


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("hello", encoding="utf-8")
    (folder / "b.txt").write_text("héllo!", encoding="utf-8")
    return folder


def test_tokens_in_document_order_with_eot(tmp_path: Path, corpus: Path) -> None:
    tok = ByteTokenizer()
    tokens = TokenCache(tmp_path / "cache").tokens(TextFileSource([str(corpus)]), tok)
    expected = [*b"hello", 256, *"héllo!".encode(), 256]
    assert tokens.tolist() == expected
    assert tokens.dtype == np.uint16
    assert not tokens.flags.writeable


def test_char_tokens_have_no_separator(tmp_path: Path, corpus: Path) -> None:
    source = TextFileSource([str(corpus)])
    tok = CharTokenizer.fit(d.text for d in source.documents())
    tokens = TokenCache(tmp_path / "cache").tokens(source, tok)
    assert tok.decode(tokens.tolist()) == "hellohéllo!"


def test_second_call_is_a_hit(counting_source: type[Any], tmp_path: Path, corpus: Path) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    cache = TokenCache(tmp_path / "cache")
    first = cache.tokens(source, ByteTokenizer())
    entry = tmp_path / "cache" / cache.key(source, ByteTokenizer())
    mtime = (entry / "tokens.bin").stat().st_mtime_ns
    # A new cache object, as a second process would have, reuses the entry.
    second = TokenCache(tmp_path / "cache").tokens(source, ByteTokenizer())
    assert source.reads == 1
    assert (entry / "tokens.bin").stat().st_mtime_ns == mtime
    assert np.array_equal(first, second)
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    assert meta["num_tokens"] == len(first) and meta["dtype"] == "uint16"
    assert meta["tokenizer_fingerprint"] == ByteTokenizer().fingerprint()


def test_changed_content_or_tokenizer_gets_new_key(tmp_path: Path, corpus: Path) -> None:
    source = TextFileSource([str(corpus)])
    cache = TokenCache(tmp_path / "cache")
    key = cache.key(source, ByteTokenizer())
    assert cache.key(source, CharTokenizer(["h"])) != key
    cache.tokens(source, ByteTokenizer())
    (corpus / "a.txt").write_text("HELLO", encoding="utf-8")
    assert cache.key(source, ByteTokenizer()) != key
    assert cache.tokens(source, ByteTokenizer())[:5].tolist() == list(b"HELLO")
    entries = [p.name for p in (tmp_path / "cache").iterdir()]
    assert len(entries) == 2 and not any(name.startswith(".tmp") for name in entries)


def test_interrupted_builds_are_not_used(
    counting_source: type[Any], tmp_path: Path, corpus: Path
) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    root = tmp_path / "cache"
    key = TokenCache(root).key(source, ByteTokenizer())
    # A crashed build in another process: only its private temporary folder exists.
    stale = root / f".tmp-{key}-999999"
    stale.mkdir(parents=True)
    (stale / "tokens.bin").write_bytes(b"\0\0")
    # A final-named folder without meta.json (e.g. copied by hand, or an old bug).
    (root / key).mkdir()
    (root / key / "tokens.bin").write_bytes(b"\1\0" * 4)
    tokens = TokenCache(root).tokens(source, ByteTokenizer())
    assert source.reads == 1  # it rebuilt
    assert tokens.tolist()[:5] == list(b"hello")
    assert (root / key / "meta.json").is_file()
    assert not (root / f".tmp-{key}-{os.getpid()}").exists()


def test_meta_not_matching_tokens_is_rebuilt(
    counting_source: type[Any], tmp_path: Path, corpus: Path
) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    cache = TokenCache(tmp_path / "cache")
    n = len(cache.tokens(source, ByteTokenizer()))
    entry = tmp_path / "cache" / cache.key(source, ByteTokenizer())
    with (entry / "tokens.bin").open("r+b") as f:  # truncated by a full disk, say
        f.truncate(4)
    assert len(cache.tokens(source, ByteTokenizer())) == n
    assert source.reads == 2


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    source = TextFileSource([str(tmp_path / "empty.txt")])
    with pytest.raises(DataError, match=r"empty\.txt.*no tokens"):
        TokenCache(tmp_path / "cache").tokens(source, CharTokenizer(["a"]))
    assert list((tmp_path / "cache").iterdir()) == []


def test_large_vocab_uses_uint32(tmp_path: Path) -> None:
    text = "".join(chr(0x10000 + i) for i in range(70_000))  # no surrogates: valid UTF-8
    tok = CharTokenizer.fit([text])
    assert tok.vocab_size > 65_536
    path = tmp_path / "wide.txt"
    path.write_text(text[-10:], encoding="utf-8")
    tokens = TokenCache(tmp_path / "cache").tokens(TextFileSource([str(path)]), tok)
    assert tokens.dtype == np.uint32
    assert tok.decode(tokens.tolist()) == text[-10:]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEAT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NEAT_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "neat"
