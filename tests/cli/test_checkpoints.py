"""`neat checkpoints inspect`: what a checkpoint holds, without loading a model."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors import safe_open

from neat.cli import cli

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
name: tiny
model: {type: gpt, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32}
data: {type: text, path: corpus.txt, tokenizer: {type: char}, val_fraction: 0.1}
optimization: {lr: 1.0e-3, min_lr: 1.0e-4, warmup_steps: 5, decay_steps: 100}
training: {max_steps: 10, batch_size: 4, seed: 7, device: cpu}
evaluation: {interval: 10, batches: 2}
monitoring: {log_interval: 5}
checkpoint: {interval: 5, keep_last: 2}
"""


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat", env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-step run of a 2-layer GPT with checkpoints at steps 5 and 10."""
    root = tmp_path_factory.mktemp("inspect")
    text = (REPO / "examples" / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    (root / "corpus.txt").write_text(text[:60_000], encoding="utf-8")
    (root / "tiny.yaml").write_text(CONFIG, encoding="utf-8")
    code, _, err = invoke("train", "-c", str(root / "tiny.yaml"), "--run-dir", str(root / "run"))
    assert code == 0, err
    return root / "run"


def stored_shapes(checkpoint: Path) -> dict[str, list[int]]:
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as f:
        return {name: list(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118


def test_inspect_a_run_shows_its_newest_checkpoint(run: Path) -> None:
    code, out, err = invoke("checkpoints", "inspect", str(run))
    assert code == 0, err
    assert re.search(r"checkpoint\s+.*step_10\n", out)
    assert re.search(r"format\s+1 \(current\)", out)
    assert re.search(r"step\s+10\n", out) and re.search(r"tokens seen\s+1,280", out)
    assert re.search(r"metrics\s+.*val_loss=\d\.\d{4}", out)
    assert "model config:" in out and "  n_layer: 2" in out and '  type: "gpt"' in out
    vocab = stored_shapes(run / "checkpoints" / "step_10")["wte.weight"][0]
    assert re.search(rf"wte\.weight\s+\({vocab}, 32\)\s+float32\s+{vocab * 32:,}", out)
    assert re.search(r"lm_head\.weight\s+.*tied to wte\.weight", out)
    assert re.search(r"blocks\.1\.attn\.c_attn\.weight\s+\(96, 32\)\s+float32\s+3,072", out)


def test_inspect_json_lists_every_tensor(run: Path) -> None:
    checkpoint = run / "checkpoints" / "step_5"
    code, out, err = invoke("checkpoints", "inspect", str(checkpoint), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["path"] == str(checkpoint)
    assert (info["format_version"], info["migrations"], info["step"]) == (1, [], 5)
    assert info["tokens_seen"] == 640 and info["model_config"]["n_embd"] == 32
    assert set(info["metrics"]) >= {"loss"} and "model.safetensors" in info["files"]
    tensors = {t["name"]: t for t in info["tensors"]}
    shapes = stored_shapes(checkpoint)
    assert {n: t["shape"] for n, t in tensors.items() if not t["tied_to"]} == shapes
    assert tensors["lm_head.weight"]["tied_to"] == "wte.weight"
    assert info["parameters"] == sum(t["params"] for t in tensors.values())
    assert info["parameters"] == sum(_numel(s) for s in shapes.values())


def _numel(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def test_inspect_draws_a_table_on_a_terminal(run: Path) -> None:
    code, out, err = invoke("checkpoints", "inspect", str(run), env={"FORCE_COLOR": "1"})
    assert code == 0, err
    assert "┃" in out and "wte.weight" in out and "tied to wte.weight" in out


def test_missing_path_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke("checkpoints", "inspect", str(tmp_path / "nope"))
    assert code == 2
    assert "does not exist" in err


def test_incomplete_checkpoint_exits_2(run: Path, tmp_path: Path) -> None:
    broken = tmp_path / "run" / "checkpoints" / "step_10"
    shutil.copytree(run / "checkpoints" / "step_10", broken)
    (broken / "state.json").unlink()
    code, _, err = invoke("checkpoints", "inspect", str(broken))
    assert code == 2 and "has no state.json" in err
    code, _, err = invoke("checkpoints", "inspect", str(tmp_path / "run"))
    assert code == 2 and "no complete checkpoint" in err and "step_10" in err


def _weights_only(run: Path, target: Path) -> Path:
    """A checkpoint as a person or a merge tool writes it: weights, config and tokenizer,
    and a state.json with no optimizer, step, data position or RNG state."""
    source = run / "checkpoints" / "step_10"
    target.mkdir()
    names = ["model.safetensors", "tokenizer.json", "config.yaml"]
    for name in names:
        shutil.copyfile(source / name, target / name)
    saved = json.loads((source / "state.json").read_text())
    files = {n: hashlib.sha256((target / n).read_bytes()).hexdigest() for n in names}
    state = {
        "format_version": 1,
        "config": saved["config"],
        "tensor_aliases": saved["tensor_aliases"],  # the tied head, stored once
        "files": files,
    }
    (target / "state.json").write_text(json.dumps(state))
    return target


def test_a_weights_only_checkpoint_evaluates_and_generates(run: Path, tmp_path: Path) -> None:
    checkpoint = _weights_only(run, tmp_path / "merged")
    config = str(run.parent / "tiny.yaml")
    code, out, err = invoke("eval", "-c", config, "--checkpoint", str(checkpoint), "--json")
    assert code == 0, err
    assert json.loads(out)["val_loss"] > 0
    code, out, err = invoke(
        "generate", "--checkpoint", str(checkpoint), "--prompt", "RO", "--max-new-tokens", "5"
    )
    assert code == 0, err
    assert out.startswith("RO")
    code, out, err = invoke("checkpoints", "inspect", str(checkpoint), "--json")
    assert code == 0, err
    assert json.loads(out)["step"] == 0

    # only a resume needs the training state, and it says so
    code, _, err = invoke("train", "-c", config, "--resume", str(checkpoint), "--run-dir",
                          str(tmp_path / "resumed"))  # fmt: skip
    assert code == 2
    assert f"checkpoint {checkpoint} holds weights only" in err
    assert not (tmp_path / "resumed").exists()


def test_run_and_checkpoint_files_are_0644_whatever_the_umask(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    previous = os.umask(0o077)  # mkstemp and safetensors would then leave files 0600
    try:
        code, _, err = invoke("train", "-c", str(tiny_config), "--run-dir", str(run),
                              "--set", "training.max_steps=10")  # fmt: skip
    finally:
        os.umask(previous)
    assert code == 0, err
    checkpoint = run / "checkpoints" / "step_10"
    written = [run / "config.yaml", run / "tokenizer.json", *checkpoint.iterdir()]
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert modes == dict.fromkeys(modes, "0o644"), modes


def test_a_checkpoint_without_a_config_cannot_generate_and_says_why(
    run: Path, tmp_path: Path
) -> None:
    checkpoint = _weights_only(run, tmp_path / "bare")
    state = json.loads((checkpoint / "state.json").read_text())
    del state["config"]
    (checkpoint / "state.json").write_text(json.dumps(state))
    code, _, err = invoke("generate", "--checkpoint", str(checkpoint), "--prompt", "RO")
    assert code == 2
    assert f"checkpoint {checkpoint} stores no config in its state.json" in err
