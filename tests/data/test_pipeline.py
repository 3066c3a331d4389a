"""prepare_token_data: per-part train/validation splits over the sharded cache, no copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neat.data import (
    BatchSampler,
    ByteTokenizer,
    MixtureSource,
    TextFileSource,
    TokenCache,
    build_tokenizer,
    eval_batches,
    prepare_token_data,
)
from neat.data.tokenizers import CharTokenizerConfig

SHAKESPEARE = Path(__file__).resolve().parents[2] / "examples" / "data" / "tinyshakespeare.txt"


def test_tiny_shakespeare_split_matches_nanogpt(tmp_path: Path) -> None:
    source = TextFileSource([str(SHAKESPEARE)])
    tokenizer = build_tokenizer(CharTokenizerConfig(), source, tmp_path)
    data = prepare_token_data(source, tokenizer, TokenCache(tmp_path / "tokens"), 0.1)
    assert tokenizer.vocab_size == 65 and data.tokenizer is tokenizer
    assert len(data.parts) == 1 and data.parts[0].weight == 1.0
    assert (len(data.train), len(data.val)) == (1_003_854, 111_540)
    assert data.train.dtype == np.uint16
    for split in (data.train, data.val):  # segments of the one cached shard, never copies
        (segment,) = split.segments
        assert isinstance(segment.tokens, np.memmap) and not segment.tokens.flags.writeable
        assert Path(str(segment.tokens.filename)).name == "shard_00000.bin"
        assert segment.mask is None
    assert (data.train.segments[0].start, data.train.segments[0].end) == (0, 1_003_854)
    assert (data.val.segments[0].start, data.val.segments[0].end) == (1_003_854, 1_115_394)
    text = SHAKESPEARE.read_text(encoding="utf-8")
    assert tokenizer.decode(data.train.tokens()[:14].tolist()) == text[:14]
    assert tokenizer.decode(data.val.tokens()[:20].tolist()) == text[1_003_854 : 1_003_854 + 20]
    batch = BatchSampler(
        data.weighted_train(), batch_size=12, block_size=64, seed=1337
    ).next_batch()
    assert batch.input_ids.shape == (12, 64)
    assert len(eval_batches(data.val_splits(), 12, 64, 20)) == 20


def test_val_fraction_must_be_a_fraction(tmp_path: Path) -> None:
    source = TextFileSource([str(SHAKESPEARE)])
    with pytest.raises(ValueError, match="val_fraction"):
        prepare_token_data(
            source,
            build_tokenizer(CharTokenizerConfig(), source, tmp_path),
            TokenCache(tmp_path),
            1.0,
        )


def test_splits_over_many_shards_are_segments(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(bytes(range(32, 127)) * 10)  # 950 bytes + eot = 951 tokens
    data = prepare_token_data(
        TextFileSource([str(path)]), ByteTokenizer(), tmp_path / "c", 0.25, shard_tokens=100
    )
    prepared = data.parts[0].prepared
    assert len(prepared.shards) == 10
    cut = int(951 * 0.75)
    assert (len(data.train), len(data.val)) == (cut, 951 - cut)
    assert [(s.start, s.end) for s in data.train.segments][-1] == (0, cut % 100)
    first_val = data.val.segments[0]
    assert (first_val.start, first_val.end) == (cut % 100, 100)
    assert all(len(s) for s in data.train.segments + data.val.segments)
    both = np.concatenate([np.asarray(data.train), np.asarray(data.val)])
    assert np.array_equal(both, prepared.tokens())
    for segment in data.train.segments + data.val.segments:
        assert isinstance(segment.tokens, np.memmap)  # a whole shard file, read-only


def test_mixture_splits_each_part(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("a" * 999, encoding="utf-8")
    b.write_text("b" * 199, encoding="utf-8")
    mixture = MixtureSource([(TextFileSource([str(a)]), 3.0), (TextFileSource([str(b)]), 1.0)])
    data = prepare_token_data(mixture, ByteTokenizer(), tmp_path / "c", 0.1)
    assert [p.weight for p in data.parts] == [3.0, 1.0]
    assert [(len(p.train), len(p.val)) for p in data.parts] == [(900, 100), (180, 20)]
    assert [len(s) for s in data.val_splits()] == [100, 20]
    assert bytes(np.asarray(data.parts[1].train).astype(np.uint8)) == b"b" * 180
    assert len(data.train) == 1080 and len(data.val) == 120
    assert [w for _, w in data.weighted_train()] == [3.0, 1.0]
