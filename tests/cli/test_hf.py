"""`neat checkpoints import-hf` / `export-hf` from the command line: the run an import writes
generates and fine-tunes, and every user error is one message, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from neat.cli import cli
from neat.models import blocks
from tests.models.test_hf import WORDS, neat_checkpoint, save_hf, tiny_gpt2

transformers = pytest.importorskip("transformers")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def hf_dir(tmp_path: Path) -> Path:
    return save_hf(tiny_gpt2(), tmp_path / "hf")


def assert_refused(code: int, err: str, out: Path, *named: str) -> None:
    assert code == 2, err
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    for text in named:
        assert text in err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")]


def test_imported_run_generates_and_fine_tunes(hf_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, out, err = invoke("checkpoints", "import-hf", str(hf_dir), "--out", str(run))
    assert code == 0, err
    assert "gpt2 layout" in out
    assert (run / "checkpoints" / "step_0" / "state.json").is_file()
    code, out, err = invoke(
        "generate", "--checkpoint", str(run), "--prompt", "w1 w2", "--max-new-tokens", "4"
    )
    assert code == 0, err
    assert out.startswith("w1 w2")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(WORDS[2 + i % 30] for i in range(3000)), encoding="utf-8")
    code, _, err = invoke(
        "train",
        "-c",
        str(run / "config.yaml"),
        "--set",
        f"data.path={corpus}",
        "--set",
        "training={max_steps: 2, batch_size: 2, device: cpu}",
        "--set",
        "evaluation.interval=2",
        "--set",
        "evaluation.batches=1",
        "--run-dir",
        str(tmp_path / "tuned"),
    )
    assert code == 0, err
    assert (tmp_path / "tuned" / "checkpoints" / "step_2").is_dir()


def test_an_unsupported_architecture_is_refused(hf_dir: Path, tmp_path: Path) -> None:
    bert = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 16}
    (hf_dir / "config.json").write_text(json.dumps(bert), encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = invoke("checkpoints", "import-hf", str(hf_dir), "--out", str(out))
    assert_refused(code, err, out, "config.json", "model_type 'bert' (BertModel)", "Llama")


def test_a_folder_without_config_json_is_refused(hf_dir: Path, tmp_path: Path) -> None:
    (hf_dir / "config.json").unlink()
    out = tmp_path / "run"
    code, _, err = invoke("checkpoints", "import-hf", str(hf_dir), "--out", str(out))
    assert_refused(code, err, out, f"{hf_dir / 'config.json'} does not exist")


def test_mismatched_shapes_are_refused(hf_dir: Path, tmp_path: Path) -> None:
    tensors = load_file(str(hf_dir / "model.safetensors"))
    tensors["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(16, 48)
    save_file(tensors, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "run"
    code, _, err = invoke("checkpoints", "import-hf", str(hf_dir), "--out", str(out))
    assert_refused(code, err, out, "transformer.h.1.mlp.c_fc.weight", "(16, 48)", "(16, 64)")


def test_an_existing_out_folder_is_refused(hf_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    code, _, err = invoke("checkpoints", "import-hf", str(hf_dir), "--out", str(out))
    assert code == 2 and "--out" in err and "already exists" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    neat_checkpoint(tmp_path, {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16})
    code, _, err = invoke("checkpoints", "export-hf", str(tmp_path / "run"), "--out", str(out))
    assert code == 2 and "already exists" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_char_tokenizer_exports_the_model_only(tmp_path: Path) -> None:
    (tmp_path / "chars.json").write_text(
        json.dumps({"neat_tokenizer": "char", "chars": list("abcdefgh")}), encoding="utf-8"
    )
    neat_checkpoint(
        tmp_path,
        {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8},
        tmp_path / "chars.json",
    )
    out = tmp_path / "hf"
    code, _, err = invoke("checkpoints", "export-hf", str(tmp_path / "run"), "--out", str(out))
    assert code == 0, err
    assert "model only" in err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert transformers.AutoModelForCausalLM.from_pretrained(out).config.vocab_size == 8


def test_a_model_no_hf_layout_expresses_is_refused(tmp_path: Path) -> None:
    if "rmsnorm" not in blocks.NORMS:
        pytest.skip("neat's block tables lack norm: rmsnorm")
    model = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8, "norm": "rmsnorm"}
    neat_checkpoint(tmp_path, model)
    out = tmp_path / "hf"
    code, _, err = invoke("checkpoints", "export-hf", str(tmp_path / "run"), "--out", str(out))
    assert_refused(code, err, out, "model.norm: rmsnorm", "GPT-2 needs")
