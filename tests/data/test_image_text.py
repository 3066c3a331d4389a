"""Interleaved text and image codes: documents round-trip through the tokenizer, the
tokenizer through its file, and through a real training run."""

from __future__ import annotations

from pathlib import Path

import pytest

from neat.data.image_text import (
    BOI,
    EOI,
    FIRST_CODE,
    ImageTextTokenizer,
    image_segment,
    split_images,
)
from neat.data.tokenizers import load_tokenizer
from neat.errors import DataError

K = 16


def interleaved() -> tuple[str, list[str | list[int]]]:
    parts: list[str | list[int]] = [
        "step 1: right → (0,1)\n",
        [0, 3, 15, 2],
        "step 2: down\n",
        [7] * 9,
        "answer: é\n",
    ]
    text = "".join(p if isinstance(p, str) else image_segment(p) for p in parts)
    return text, parts


def test_an_interleaved_document_round_trips() -> None:
    tok = ImageTextTokenizer(K)
    text, parts = interleaved()
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert split_images(tok.decode(ids)) == parts
    assert ids.count(BOI) == 2 and ids.count(EOI) == 2
    codes = [i - FIRST_CODE for i in ids if i >= FIRST_CODE]
    assert codes == [0, 3, 15, 2] + [7] * 9
    text_ids = [i for i in ids if i < 256]
    assert bytes(text_ids).decode("utf-8") == "".join(p for p in parts if isinstance(p, str))


def test_ids_and_byte_counts_cover_the_vocabulary() -> None:
    tok = ImageTextTokenizer(K)
    assert tok.vocab_size == FIRST_CODE + K
    assert tok.code_ids == list(range(FIRST_CODE, FIRST_CODE + K))
    assert len(tok.token_bytes()) == tok.vocab_size
    assert sum(tok.token_bytes()) == 256  # images carry no text bytes
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_a_code_beyond_the_codebook_is_refused_not_written_as_bytes() -> None:
    """A VQ codebook larger than data.tokenizer.codes would otherwise turn into text."""
    tok = ImageTextTokenizer(4)
    with pytest.raises(DataError, match=r"image code 5 is outside data.tokenizer.codes=4"):
        tok.encode(image_segment([5]))  # code 5 does not exist with 4 codes
    assert tok.decode(tok.encode(image_segment([3]))) == image_segment([3])


def test_a_cut_off_image_comes_back_as_far_as_it_got() -> None:
    assert split_images("a" + image_segment([1, 2])[:-1]) == ["a", [1, 2]]


def test_the_tokenizer_file_reloads_the_same_vocabulary(tmp_path: Path) -> None:
    tok = ImageTextTokenizer(K)
    tok.save(tmp_path / "tokenizer.json")
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert isinstance(loaded, ImageTextTokenizer)
    assert loaded.fingerprint() == tok.fingerprint()
    text, _ = interleaved()
    assert loaded.encode(text) == tok.encode(text)
    assert ImageTextTokenizer(K + 1).fingerprint() != tok.fingerprint()


def test_interleaved_documents_train_through_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from neat.cli import cli

    text, _ = interleaved()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text * 200, encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 16, block_size: 32}\n"
        f"data: {{type: text, path: {corpus}, tokenizer: {{type: image_text, codes: {K}}}}}\n"
        "training: {max_steps: 3, batch_size: 4, device: cpu}\n"
        "evaluation: {interval: 3, batches: 1}\n",
        encoding="utf-8",
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--run-dir", str(run)])
    assert result.exit_code == 0, result.stderr
    assert isinstance(load_tokenizer(run / "tokenizer.json"), ImageTextTokenizer)
