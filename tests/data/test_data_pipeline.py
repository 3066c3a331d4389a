"""prepare_token_data: the train/validation split over the cached tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neat.config import CharTokenizerConfig
from neat.data import (
    BatchSampler,
    TextFileSource,
    TokenCache,
    build_tokenizer,
    eval_batches,
    prepare_token_data,
)

SHAKESPEARE = Path(__file__).resolve().parents[2] / "examples" / "data" / "tinyshakespeare.txt"


def test_tiny_shakespeare_split_matches_nanogpt(tmp_path: Path) -> None:
    source = TextFileSource([str(SHAKESPEARE)])
    tokenizer = build_tokenizer(CharTokenizerConfig(), source, tmp_path)
    data = prepare_token_data(source, tokenizer, TokenCache(tmp_path / "tokens"), 0.1)
    assert tokenizer.vocab_size == 65
    assert (len(data.train), len(data.val)) == (1_003_854, 111_540)
    assert data.train.dtype == np.uint16
    for split in (data.train, data.val):  # views of the one cached file, never copies
        assert isinstance(split, np.memmap) and not split.flags.writeable
        assert split.filename is not None and Path(split.filename).name == "tokens.bin"
        assert split.base is not None
    text = SHAKESPEARE.read_text(encoding="utf-8")
    assert tokenizer.decode(data.train[:14].tolist()) == text[:14]
    assert tokenizer.decode(data.val[:20].tolist()) == text[1_003_854 : 1_003_854 + 20]
    batch = BatchSampler(data.train, batch_size=12, block_size=64, seed=1337).next_batch()
    assert batch.input_ids.shape == (12, 64)
    assert len(eval_batches(data.val, 12, 64, 20)) == 20


def test_val_fraction_must_be_a_fraction(tmp_path: Path) -> None:
    source = TextFileSource([str(SHAKESPEARE)])
    with pytest.raises(ValueError, match="val_fraction"):
        prepare_token_data(
            source,
            build_tokenizer(CharTokenizerConfig(), source, tmp_path),
            TokenCache(tmp_path),
            1.0,
        )
