"""`neat data ...` commands and training with a trained BPE tokenizer, through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.data import load_tokenizer

BPE = "data.tokenizer={type: bpe, vocab_size: 400}"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


def test_tokenizer_train_then_train_eval_generate_with_bpe(
    tiny_config: Path, tmp_path: Path
) -> None:
    output = tmp_path / "tok.json"
    code, out, err = invoke(
        "data", "tokenizer", "train", "-c", str(tiny_config), "--set", BPE, "--output", str(output)
    )
    assert code == 0, err
    assert "400 tokens" in out
    trained = load_tokenizer(output)
    assert trained.vocab_size == 400
    text = "ROMEO: wherefore art thou?"
    assert trained.decode(trained.encode(text)) == text

    run = tmp_path / "run"
    code, _, err = invoke(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(run),
        "--set",
        BPE,
        "--set",
        "training.max_steps=10",
    )
    assert code == 0, err
    saved = json.loads((run / "tokenizer.json").read_text())
    assert "model" in saved  # the HF tokenizer.json format travels with the run
    code, out, err = invoke(
        "eval", "-c", str(tiny_config), "--set", BPE, "--checkpoint", str(run), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["val_bpb"] > 0
    code, out, err = invoke(
        "generate", "--checkpoint", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "5"
    )
    assert code == 0, err
    assert out.startswith("ROMEO:")


def test_tokenizer_train_refuses_a_byte_tokenizer(tiny_config: Path) -> None:
    code, _, err = invoke(
        "data", "tokenizer", "train", "-c", str(tiny_config), "--set", "data.tokenizer.type=byte"
    )
    assert code == 2 and "nothing to train" in err


def test_prepare_then_inspect(tiny_config: Path) -> None:
    code, out, err = invoke("data", "prepare", "-c", str(tiny_config), "--workers", "1")
    assert code == 0, err
    assert "60,000 tokens" in out and ("built" in out or "cached" in out)
    again = invoke("data", "prepare", "-c", str(tiny_config))
    assert again[0] == 0 and again[1].startswith("cached")  # never tokenized twice
    code, out, err = invoke("data", "inspect", "-c", str(tiny_config), "--json", "--samples", "2")
    assert code == 0, err
    report = json.loads(out)
    assert report["tokens"] == 60_000 and report["documents"] == 1
    assert len(report["samples"]) == 2


def test_prepare_with_an_unreadable_data_file_is_one_error(tiny_config: Path) -> None:
    corpus = tiny_config.parent / "corpus.txt"
    corpus.chmod(0)
    try:
        if os.access(corpus, os.R_OK):
            pytest.skip("this user reads files whatever their mode (root)")
        code, _, err = invoke("data", "prepare", "-c", str(tiny_config), "--workers", "1")
    finally:
        corpus.chmod(0o644)
    assert code == 2 and err.startswith("Error: cannot read data file") and str(corpus) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
