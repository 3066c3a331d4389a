"""Char and byte tokenizers: round trips, errors, save/load, the config builder."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from neat.config import ComponentConfig, register_component
from neat.data import (
    ByteTokenizer,
    CharTokenizer,
    TextFileSource,
    build_tokenizer,
    encode_to_array,
    load_tokenizer,
)
from neat.data.tokenizers import ByteTokenizerConfig, CharTokenizerConfig
from neat.errors import CheckpointError, ConfigError, DataError
from neat.interfaces import ITokenizer
from neat.interfaces.contexts import TokenizerContext

SHAKESPEARE = Path(__file__).resolve().parents[2] / "examples" / "data" / "tinyshakespeare.txt"


def test_char_vocab_is_sorted_unique() -> None:
    tok = CharTokenizer.fit(["hello", "world!"])
    assert isinstance(tok, ITokenizer)
    assert tok.chars == sorted(set("helloworld!"))
    assert tok.vocab_size == len(tok.chars)
    assert tok.eot_id is None
    assert tok.encode("hello") == [tok.chars.index(c) for c in "hello"]
    assert tok.decode(tok.encode("world!")) == "world!"


def test_char_token_bytes_are_utf8_lengths() -> None:
    tok = CharTokenizer(["a", "é", "€", "😀"])
    assert dict(zip(tok.chars, tok.token_bytes(), strict=True)) == {"a": 1, "é": 2, "€": 3, "😀": 4}


def test_char_unknown_character_is_named() -> None:
    tok = CharTokenizer.fit(["abc"])
    with pytest.raises(DataError, match=r"'z'.*not in the char tokenizer's vocabulary"):
        tok.encode("abz")


@pytest.mark.parametrize("ids", [[0, 1], [-1], [0, -2, 0]])
def test_char_decode_rejects_ids_outside_vocab(ids: list[int]) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        CharTokenizer(["a"]).decode(ids)


@pytest.mark.parametrize("ids", [[256, 300], [-1], [104, 256, 999]])
def test_byte_decode_rejects_ids_outside_vocab(ids: list[int]) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ByteTokenizer().decode(ids)


def test_decode_takes_tensors_and_arrays_by_value() -> None:
    ids = ByteTokenizer().encode("héllo")
    assert ByteTokenizer().decode(torch.tensor(ids)) == "héllo"  # not the tensor's raw bytes
    assert ByteTokenizer().decode(np.array(ids, dtype=np.int64)) == "héllo"
    assert ByteTokenizer().decode([*ids, ByteTokenizer.EOT]) == "héllo"  # end of text dropped


def test_char_rejects_multichar_entries() -> None:
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["ab"])


def test_char_encode_is_fast_on_a_megabyte() -> None:
    text = SHAKESPEARE.read_text(encoding="utf-8")
    tok = CharTokenizer.fit([text])
    start = time.perf_counter()
    ids = tok.encode(text)
    elapsed = time.perf_counter() - start
    assert len(ids) == len(text) == 1_115_394
    assert tok.vocab_size == 65
    assert elapsed < 0.5


@given(st.text(min_size=1), st.data())
def test_char_round_trip_on_its_vocab(vocab_text: str, data: st.DataObject) -> None:
    tok = CharTokenizer.fit([vocab_text])
    text = data.draw(st.text(alphabet=st.sampled_from(tok.chars)))
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@given(st.text())
def test_byte_round_trip_on_any_text(text: str) -> None:
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.decode([tok.EOT, *ids, tok.EOT]) == text  # end-of-text never shows up as text


def test_byte_tokenizer_basics() -> None:
    tok = ByteTokenizer()
    assert isinstance(tok, ITokenizer)
    assert (tok.vocab_size, tok.eot_id) == (257, 256)
    assert tok.token_bytes() == [1] * 256 + [0]
    assert tok.decode(list("é".encode())[:1]) == "\ufffd"  # a cut-off sequence is replaced
    assert encode_to_array(tok, "hi").tolist() == [104, 105]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    char = CharTokenizer.fit(["to be or not"])
    char.save(tmp_path / "tok" / "char.json")
    ByteTokenizer().save(tmp_path / "byte.json")
    spec = json.loads((tmp_path / "tok" / "char.json").read_text(encoding="utf-8"))
    assert spec == {"neat_tokenizer": "char", "chars": char.chars}
    loaded = load_tokenizer(tmp_path / "tok" / "char.json")
    assert isinstance(loaded, CharTokenizer)
    assert loaded.fingerprint() == char.fingerprint()
    assert loaded.encode("not to be") == char.encode("not to be")
    assert isinstance(load_tokenizer(tmp_path / "byte.json"), ByteTokenizer)


def test_fingerprint_depends_on_vocab() -> None:
    assert CharTokenizer(["a", "b"]).fingerprint() == CharTokenizer(["b", "a"]).fingerprint()
    assert CharTokenizer(["a", "b"]).fingerprint() != CharTokenizer(["a", "c"]).fingerprint()
    assert ByteTokenizer().fingerprint() != CharTokenizer(["a"]).fingerprint()


def test_load_missing_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tokenizer(tmp_path / "absent.json")
    (tmp_path / "junk.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="not JSON"):
        load_tokenizer(tmp_path / "junk.json")
    (tmp_path / "other.json").write_text('{"neat_tokenizer": "bpe"}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="not a valid neat tokenizer"):
        load_tokenizer(tmp_path / "other.json")


def test_build_char_tokenizer_caches_vocab(counting_source: type[Any], tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abcabc\n", encoding="utf-8")
    source = counting_source(TextFileSource([str(corpus)]))
    cache_dir = tmp_path / "cache"
    first = build_tokenizer(CharTokenizerConfig(), source, cache_dir)
    assert isinstance(first, CharTokenizer)
    assert first.chars == ["\n", "a", "b", "c"]
    assert (cache_dir / f"vocab-char-{source.fingerprint()[:16]}.json").is_file()
    second = build_tokenizer(CharTokenizerConfig(), source, cache_dir)
    assert source.reads == 1  # the second run did not scan the corpus
    assert second.fingerprint() == first.fingerprint()


def test_build_char_tokenizer_ignores_damaged_vocab_cache(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("xy", encoding="utf-8")
    source = TextFileSource([str(corpus)])
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / f"vocab-char-{source.fingerprint()[:16]}.json").write_text("garbage")
    tok = build_tokenizer(CharTokenizerConfig(), source, cache_dir)
    assert isinstance(tok, CharTokenizer) and tok.chars == ["x", "y"]


def test_build_byte_and_unknown(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("x", encoding="utf-8")
    source = TextFileSource([str(corpus)])
    assert isinstance(build_tokenizer(ByteTokenizerConfig(), source, tmp_path), ByteTokenizer)
    with pytest.raises(ConfigError, match="unknown tokenizer type 'wordpiece'"):
        build_tokenizer(ComponentConfig(type="wordpiece"), source, tmp_path)


def test_tokenizer_registry_is_extensible(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("x", encoding="utf-8")

    class UpperConfig(ComponentConfig):
        type: str = "test-upper"

    def build_upper(cfg: UpperConfig, ctx: TokenizerContext) -> CharTokenizer:
        return CharTokenizer.fit(d.text.upper() for d in ctx.source.documents())

    register_component("tokenizer", UpperConfig, build_upper)
    tok = build_tokenizer(UpperConfig(), TextFileSource([str(corpus)]), tmp_path)
    assert isinstance(tok, CharTokenizer) and tok.chars == ["X"]


def test_char_tokenizer_without_eot_keeps_its_vocabulary_and_fingerprint() -> None:
    # Existing char checkpoints and caches were made with exactly this spec.
    tok = CharTokenizer(list("ba"))
    assert tok.vocab_size == 2 and tok.eot_id is None and tok.token_bytes() == [1, 1]
    spec = json.dumps({"chars": ["a", "b"], "neat_tokenizer": "char"}, sort_keys=True)
    assert tok.fingerprint() == hashlib.sha256(spec.encode()).hexdigest()


def test_char_tokenizer_with_eot_round_trips(tmp_path: Path) -> None:
    tok = CharTokenizer(list("ab"), eot=True)
    assert (tok.vocab_size, tok.eot_id, tok.token_bytes()) == (3, 2, [1, 1, 0])
    assert tok.encode("ba") == [1, 0] and tok.decode([1, 2, 0, 2]) == "ba"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([3])
    assert tok.fingerprint() != CharTokenizer(list("ab")).fingerprint()
    tok.save(tmp_path / "tok.json")
    loaded = load_tokenizer(tmp_path / "tok.json")
    assert isinstance(loaded, CharTokenizer) and loaded.eot_id == 2
    assert loaded.fingerprint() == tok.fingerprint()
