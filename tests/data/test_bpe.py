"""Byte-level BPE and HF tokenizer.json files: training, round trips, caching, config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from neat.config import load_config
from neat.data import (
    ByteTokenizer,
    CharTokenizer,
    HFTokenizer,
    TextFileSource,
    bpe_cache_path,
    build_tokenizer,
    load_tokenizer,
    train_bpe,
    train_tokenizer,
)
from neat.data.bpe import _pieces
from neat.data.tokenizers import BPETokenizerConfig, HFTokenizerConfig
from neat.errors import CheckpointError, ConfigError, DataError
from neat.interfaces import ITokenizer

SHAKESPEARE = Path(__file__).resolve().parents[2] / "examples" / "data" / "tinyshakespeare.txt"
SPECIALS = ["<|endoftext|>", "<|pad|>"]
VOCAB = 400

UNICODE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
TRICKY = [
    "",
    " ",
    "To be, or not to be 😀👩‍👩‍👧 — 中文字符 日本語 한국어",
    "e\u0301 n\u0303 \u0915\u094d\u0937 a\u200db",  # combining marks, virama, zero-width joiner
    "line\r\nnext\rlast\n\n\t  spaces   ",
    "nul\x00byte \x7f\U0010ffff\ufeff",
    "<|endoftext|> and <|pad|> inside a document are plain text",
]


@pytest.fixture(scope="module")
def bpe() -> HFTokenizer:
    """A 400-token BPE trained on the first 200 kB of tiny Shakespeare (about 0.2 s)."""
    text = SHAKESPEARE.read_text(encoding="utf-8")[:200_000]
    docs = (text[i : i + 20_000] for i in range(0, len(text), 20_000))  # a stream of documents
    return train_bpe(docs, VOCAB, SPECIALS, min_frequency=2)


def _source(tmp_path: Path, text: str, name: str = "corpus.txt") -> TextFileSource:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return TextFileSource([str(path)])


# -- the trained tokenizer ------------------------------------------------------------------------


def test_trained_vocab_size_and_special_ids(bpe: HFTokenizer) -> None:
    assert isinstance(bpe, ITokenizer)
    assert bpe.vocab_size == VOCAB
    hf = bpe.hf_tokenizer
    assert hf.get_vocab_size(with_added_tokens=True) == VOCAB
    assert bpe.eot_id == hf.token_to_id("<|endoftext|>") == 0  # specials take the first ids
    assert hf.token_to_id("<|pad|>") == 1
    assert bpe.eot_token == "<|endoftext|>"
    # The tokenizer really merged: Shakespeare compresses well below one token per byte.
    text = SHAKESPEARE.read_text(encoding="utf-8")[300_000:320_000]
    assert len(bpe.encode(text)) < 0.7 * len(text.encode("utf-8"))


@settings(deadline=None, max_examples=300)
@given(UNICODE)
@example(TRICKY[2])
@example(TRICKY[3])
@example(TRICKY[4])
@example(TRICKY[5])
@example(TRICKY[6])
def test_round_trip_on_arbitrary_unicode(bpe: HFTokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.eot_id not in ids  # text never turns into the end-of-text token
    assert bpe.decode(ids) == text
    sizes = bpe.token_bytes()
    assert sum(sizes[i] for i in ids) == len(text.encode("utf-8"))


@settings(deadline=None, max_examples=50)
@given(st.lists(UNICODE, max_size=8))
def test_encode_batch_matches_encode(bpe: HFTokenizer, texts: list[str]) -> None:
    assert bpe.encode_batch(texts) == [bpe.encode(t) for t in texts]


def test_decode_drops_eot_but_keeps_other_specials(bpe: HFTokenizer) -> None:
    assert bpe.eot_id is not None
    hello = bpe.encode("Hello")
    assert bpe.decode([bpe.eot_id, *hello, bpe.eot_id]) == "Hello"
    assert bpe.decode([*hello, 1]) == "Hello<|pad|>"
    cut = bpe.encode("é")  # no merge for é in Shakespeare: two byte tokens
    assert len(cut) == 2 and bpe.decode(cut[:1]) == "\ufffd"  # cut-off UTF-8 never fails
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe.decode([VOCAB])


def test_token_bytes_of_shakespeare_and_specials(bpe: HFTokenizer) -> None:
    sizes = bpe.token_bytes()
    assert len(sizes) == bpe.vocab_size
    assert sizes[0] == sizes[1] == 0  # special tokens stand for no text
    text = SHAKESPEARE.read_text(encoding="utf-8")[-50_000:]
    ids = bpe.encode(text)
    assert sum(sizes[i] for i in ids) == len(text.encode("utf-8"))
    merged = [i for i in range(2 + 256, VOCAB)]
    assert all(sizes[i] >= 2 for i in merged)  # every merge joins at least two bytes


@given(st.text(alphabet="ab\n", max_size=60), st.integers(min_value=1, max_value=12))
def test_long_documents_are_cut_into_pieces_at_line_ends(text: str, size: int) -> None:
    pieces = list(_pieces(text, size))
    assert "".join(pieces) == text
    assert all(0 < len(p) <= size for p in pieces)
    assert all(p.endswith("\n") for p in pieces[:-1] if "\n" in p)


def test_default_eot_follows_known_names() -> None:
    text = ["the cat sat on the mat " * 20]
    assert train_bpe(text, 300, ["<s>", "</s>"]).eot_token == "</s>"
    assert train_bpe(text, 300, ["<pad>", "<eos>"]).eot_token == "<eos>"
    none = train_bpe(text, 300, [])
    assert (none.eot_token, none.eot_id) == (None, None)
    assert none.decode(none.encode("the cat")) == "the cat"


# -- tokenizer.json files -------------------------------------------------------------------------


def test_saved_file_is_a_plain_hf_tokenizer_json(bpe: HFTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "tokenizer.json"
    bpe.save(path)
    spec = json.loads(path.read_text(encoding="utf-8"))
    assert "model" in spec and "neat_tokenizer" not in spec
    assert spec["model"]["type"] == "BPE"
    other = Tokenizer.from_file(str(path))  # the HF library itself reads it
    assert other.encode("Romeo and Juliet").ids == bpe.encode("Romeo and Juliet")
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp file left


def test_hf_file_round_trips_via_load_and_build(bpe: HFTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    bpe.save(path)
    loaded = load_tokenizer(path)
    source = _source(tmp_path, "unused by hf")
    built = build_tokenizer(HFTokenizerConfig(path=str(path)), source, tmp_path / "cache")
    for tok in (loaded, built):
        assert isinstance(tok, HFTokenizer)
        assert tok.fingerprint() == bpe.fingerprint()
        assert (tok.vocab_size, tok.eot_id) == (bpe.vocab_size, bpe.eot_id)
        assert tok.token_bytes() == bpe.token_bytes()
        for text in TRICKY:
            assert tok.encode(text) == bpe.encode(text)
            assert tok.decode(tok.encode(text)) == text
    assert not (tmp_path / "cache").exists()  # loading a file caches nothing


def test_hf_eot_token_option(bpe: HFTokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    bpe.save(path)
    source = _source(tmp_path, "x")
    tok = build_tokenizer(HFTokenizerConfig(path=str(path), eot_token="<|pad|>"), source, tmp_path)
    assert tok.eot_id == 1
    assert tok.decode([1, *tok.encode("hi"), 0]) == "hi<|endoftext|>"
    assert tok.fingerprint() != bpe.fingerprint()  # another token stream, another cache key
    with pytest.raises(DataError, match=r"data\.tokenizer\.eot_token '<\|eos\|>' is not in"):
        build_tokenizer(HFTokenizerConfig(path=str(path), eot_token="<|eos|>"), source, tmp_path)


def test_hf_missing_or_bad_file_names_the_key(tmp_path: Path) -> None:
    source = _source(tmp_path, "x")
    missing = tmp_path / "nowhere" / "tokenizer.json"
    with pytest.raises(
        DataError, match=r"nowhere/tokenizer\.json does not exist.*data\.tokenizer\.path"
    ):
        build_tokenizer(HFTokenizerConfig(path=str(missing)), source, tmp_path)
    junk = tmp_path / "junk.json"
    junk.write_text('{"model": {"type": "BPE", "vocab": 3}}', encoding="utf-8")
    with pytest.raises(DataError, match=r"junk\.json \(data\.tokenizer\.path\) is not a Hugging"):
        build_tokenizer(HFTokenizerConfig(path=str(junk)), source, tmp_path)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(DataError, match=r"a_folder is unreadable.*data\.tokenizer\.path"):
        build_tokenizer(HFTokenizerConfig(path=str(folder)), source, tmp_path)
    with pytest.raises(CheckpointError, match=r"junk\.json: not a valid tokenizer\.json"):
        load_tokenizer(junk)


# -- building from config: training on first use, caching ----------------------------------------


def test_bpe_trains_once_then_uses_the_cache(
    counting_source: type[Any], corpus: Path, tmp_path: Path
) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    cache_dir = tmp_path / "cache"
    cfg = BPETokenizerConfig(vocab_size=350)
    first = build_tokenizer(cfg, source, cache_dir)
    assert isinstance(first, HFTokenizer) and first.vocab_size == 350
    assert source.reads == 1
    cached = bpe_cache_path(cfg, source, cache_dir)
    assert cached.parent == cache_dir and cached.name.startswith("bpe-")
    assert cached.is_file()
    mtime = cached.stat().st_mtime_ns

    second = build_tokenizer(cfg, source, cache_dir)
    assert source.reads == 1  # not retrained: the corpus was not read again
    assert cached.stat().st_mtime_ns == mtime
    assert second.fingerprint() == first.fingerprint()

    # Any setting that changes the vocabulary is another cache entry.
    other = BPETokenizerConfig(vocab_size=350, min_frequency=3)
    assert bpe_cache_path(other, source, cache_dir) != cached
    assert bpe_cache_path(BPETokenizerConfig(vocab_size=351), source, cache_dir) != cached
    specials = BPETokenizerConfig(vocab_size=350, special_tokens=["<|endoftext|>", "<x>"])
    assert bpe_cache_path(specials, source, cache_dir) != cached
    build_tokenizer(other, source, cache_dir)
    assert source.reads == 2


def test_bpe_cache_changes_with_the_corpus(tmp_path: Path) -> None:
    cfg = BPETokenizerConfig(vocab_size=300)
    a = _source(tmp_path, "to be or not to be " * 50, "a.txt")
    b = _source(tmp_path, "all the world's a stage " * 50, "b.txt")
    assert bpe_cache_path(cfg, a, tmp_path) != bpe_cache_path(cfg, b, tmp_path)
    tok_a = build_tokenizer(cfg, a, tmp_path)
    tok_b = build_tokenizer(cfg, b, tmp_path)
    assert tok_a.fingerprint() != tok_b.fingerprint()


def test_damaged_bpe_cache_is_retrained(
    counting_source: type[Any], corpus: Path, tmp_path: Path
) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    cfg = BPETokenizerConfig(vocab_size=300)
    path = bpe_cache_path(cfg, source, tmp_path)
    path.write_text('{"model": "half a file', encoding="utf-8")
    tok = build_tokenizer(cfg, source, tmp_path)
    assert source.reads == 1 and tok.vocab_size == 300
    assert isinstance(load_tokenizer(path), HFTokenizer)  # the cache was rewritten


def test_bpe_path_is_loaded_instead_of_training(
    bpe: HFTokenizer, counting_source: type[Any], corpus: Path, tmp_path: Path
) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    path = tmp_path / "mine.json"
    bpe.save(path)
    tok = build_tokenizer(BPETokenizerConfig(path=str(path)), source, tmp_path / "cache")
    assert source.reads == 0
    assert tok.fingerprint() == bpe.fingerprint()
    with pytest.raises(DataError, match=r"absent\.json does not exist.*data\.tokenizer\.path.*"):
        build_tokenizer(BPETokenizerConfig(path=str(tmp_path / "absent.json")), source, tmp_path)
    assert source.reads == 0  # a wrong path is an error, never a silent retrain


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="contains no text"):
        build_tokenizer(BPETokenizerConfig(vocab_size=300), _source(tmp_path, ""), tmp_path)


# -- train_tokenizer (behind `neat data tokenizer train`) ---------------------------------------


def test_train_tokenizer_reuses_forces_and_writes_output(
    counting_source: type[Any], corpus: Path, tmp_path: Path
) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    cache_dir = tmp_path / "cache"
    cfg = BPETokenizerConfig(vocab_size=320)
    tok, where = train_tokenizer(cfg, source, cache_dir)
    assert where == bpe_cache_path(cfg, source, cache_dir) and where.is_file()
    assert source.reads == 1

    again, where_again = train_tokenizer(cfg, source, cache_dir)
    assert (source.reads, where_again) == (1, where)  # already trained: reused
    assert again.fingerprint() == tok.fingerprint()

    output = tmp_path / "out" / "tokenizer.json"
    forced, written = train_tokenizer(cfg, source, cache_dir, output=output, force=True)
    assert source.reads == 2  # retrained
    assert written == output
    loaded = load_tokenizer(output)
    assert isinstance(loaded, HFTokenizer)
    assert loaded.fingerprint() == forced.fingerprint() == tok.fingerprint()  # deterministic
    assert loaded.decode(loaded.encode(TRICKY[2])) == TRICKY[2]
    # The next `neat train` finds the tokenizer without training.
    build_tokenizer(cfg, source, cache_dir)
    assert source.reads == 2


def test_train_tokenizer_writes_the_configured_path(
    counting_source: type[Any], corpus: Path, tmp_path: Path
) -> None:
    source = counting_source(TextFileSource([str(corpus)]))
    target = tmp_path / "tok" / "bpe.json"
    cfg = BPETokenizerConfig(vocab_size=300, path=str(target))
    _, where = train_tokenizer(cfg, source, tmp_path / "cache")
    assert where == target and target.is_file() and source.reads == 1
    mtime = target.stat().st_mtime_ns
    _, where = train_tokenizer(cfg, source, tmp_path / "cache")
    assert source.reads == 1 and target.stat().st_mtime_ns == mtime  # kept, not retrained
    # The training run then uses it.
    assert build_tokenizer(cfg, source, tmp_path / "cache").vocab_size == 300
    assert source.reads == 1


def test_train_tokenizer_char_and_untrainable_types(
    bpe: HFTokenizer, counting_source: type[Any], tmp_path: Path
) -> None:
    from neat.data.tokenizers import ByteTokenizerConfig, CharTokenizerConfig

    source = counting_source(_source(tmp_path, "abcab"))
    tok, where = train_tokenizer(CharTokenizerConfig(), source, tmp_path / "cache")
    assert isinstance(tok, CharTokenizer) and tok.chars == ["a", "b", "c"]
    assert isinstance(load_tokenizer(where), CharTokenizer)
    train_tokenizer(CharTokenizerConfig(), source, tmp_path / "cache", force=True)
    assert source.reads == 2
    with pytest.raises(ConfigError, match="'byte' has nothing to train"):
        train_tokenizer(ByteTokenizerConfig(), source, tmp_path)
    bpe.save(tmp_path / "t.json")
    with pytest.raises(ConfigError, match="'hf' has nothing to train"):
        train_tokenizer(HFTokenizerConfig(path=str(tmp_path / "t.json")), source, tmp_path)


def test_byte_and_char_encode_batch() -> None:
    texts = ["abc", "", "cab"]
    char = CharTokenizer.fit(texts)
    assert char.encode_batch(texts) == [char.encode(t) for t in texts]
    byte = ByteTokenizer()
    assert byte.encode_batch(["é", ""]) == [[0xC3, 0xA9], []]


# -- config ----------------------------------------------------------------------------------------


def test_config_validates_bpe_and_builds_from_it(corpus: Path, tmp_path: Path) -> None:
    raw = {
        "data": {
            "type": "text",
            "path": str(corpus),
            "tokenizer": {"type": "bpe", "vocab_size": 512},
        }
    }
    config = load_config(raw=raw)
    tok_cfg = config.data.tokenizer  # type: ignore[attr-defined]
    assert isinstance(tok_cfg, BPETokenizerConfig)
    assert (tok_cfg.vocab_size, tok_cfg.special_tokens, tok_cfg.min_frequency, tok_cfg.path) == (
        512,
        ["<|endoftext|>"],
        2,
        None,
    )
    tok = build_tokenizer(tok_cfg, TextFileSource([str(corpus)]), tmp_path / "cache")
    assert tok.vocab_size == 512 and tok.eot_id == 0
    dumped = config.model_dump(mode="json")["data"]["tokenizer"]
    assert dumped["type"] == "bpe" and dumped["vocab_size"] == 512


@pytest.mark.parametrize(
    ("tokenizer", "message"),
    [
        ({"type": "bpe", "vocab_sise": 512}, "vocab_sise"),
        ({"type": "bpe", "vocab_size": 100}, "vocab_size"),
        (
            {"type": "bpe", "vocab_size": 258, "special_tokens": ["<a>", "<b>", "<c>"]},
            "at least 259",
        ),
        ({"type": "bpe", "special_tokens": ["<a>", "<a>"]}, "listed twice"),
        ({"type": "bpe", "min_frequency": 0}, "min_frequency"),
        ({"type": "hf"}, "path"),
        ({"type": "hf", "path": "t.json", "eot": "</s>"}, "eot"),
    ],
)
def test_config_rejects_bad_tokenizer_sections(tokenizer: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(raw={"data": {"type": "text", "path": "x.txt", "tokenizer": tokenizer}})


def test_hf_config_path_resolves_against_the_config_file(bpe: HFTokenizer, tmp_path: Path) -> None:
    bpe.save(tmp_path / "vocab" / "tokenizer.json")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "data: {type: text, path: c.txt, tokenizer: {type: hf, path: vocab/tokenizer.json}}\n",
        encoding="utf-8",
    )
    tok_cfg = load_config(config_file).data.tokenizer  # type: ignore[attr-defined]
    assert isinstance(tok_cfg, HFTokenizerConfig)
    assert tok_cfg.path == os.path.join(str(tmp_path), "vocab", "tokenizer.json")
    tok = build_tokenizer(tok_cfg, _source(tmp_path, "c", "c.txt"), tmp_path)
    assert tok.fingerprint() == bpe.fingerprint()
