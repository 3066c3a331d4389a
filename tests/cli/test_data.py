"""`neat data ...` commands and training with a trained BPE tokenizer, through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.data import load_prepared, load_tokenizer

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


SFT_CONFIG = """\
name: sft
model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}
data: {type: jsonl, path: sft.jsonl, format: prompt_response, tokenizer: {type: char}}
training: {max_steps: 1, batch_size: 2, device: cpu}
"""


def _prepared(out: str) -> Path:
    return Path(out.split("built: ", 1)[1].split(" | ", 1)[0])


def test_prompt_response_records_stay_apart_under_the_char_tokenizer(tmp_path: Path) -> None:
    records = [("Q: ab?", "ba"), ("Q: ba?", "ab")]
    lines = [json.dumps({"prompt": p, "response": r}) for p, r in records]
    (tmp_path / "sft.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "sft.yaml").write_text(SFT_CONFIG, encoding="utf-8")
    code, out, err = invoke("data", "prepare", "-c", str(tmp_path / "sft.yaml"), "--workers", "1")
    assert code == 0, err
    entry = load_prepared(_prepared(out))
    tok = load_tokenizer(_prepared(out) / "tokenizer.json")
    assert entry is not None and tok.eot_id is not None
    expected, mask = [], []
    for prompt, response in records:
        expected += [*tok.encode(prompt), *tok.encode(response), tok.eot_id]
        mask += [0] * len(prompt) + [1] * len(response) + [1]  # learn to stop after a response
    assert entry.tokens().tolist() == expected
    trained = entry.mask()
    assert trained is not None and trained.tolist() == mask


def test_plain_text_char_vocabulary_has_no_end_of_text_id(tiny_config: Path) -> None:
    code, out, err = invoke("data", "prepare", "-c", str(tiny_config), "--workers", "1")
    assert code == 0, err
    entry = out.split(": ", 1)[1].split(" | ", 1)[0]
    tok = load_tokenizer(Path(entry) / "tokenizer.json")
    text = (tiny_config.parent / "corpus.txt").read_text(encoding="utf-8")
    assert tok.eot_id is None and tok.vocab_size == len(set(text))
