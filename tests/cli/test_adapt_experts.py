"""`neat adapt experts`: a synthetic math base, then one SVF expert per task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.models.adapters.svf import base_fingerprint, load_expert
from neat.models.load import load_trained_model
from neat.persistence import resolve_checkpoint

MATH_BASE = """\
name: math-base
model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 32, bias: false}
data:
  type: synthetic_math
  seed: 0
  num_train: 2000
  levels: [2, 3]
  operations: [add, sub, mul]
  test: {levels: [1]}
  format: prompt_response
  tokenizer: {type: char}
optimization: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 2}
training: {max_steps: 6, batch_size: 8, seed: 1, device: cpu}
evaluation: {type: exact_match, interval: 100, num_problems: 8}
checkpoint: {interval: 100}
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


def train_math_base(root: Path) -> tuple[Path, Path]:
    """(config, run) of a 6-step MATH_BASE run under `root`."""
    config = root / "base.yaml"
    config.write_text(MATH_BASE, encoding="utf-8")
    run = root / "base"
    code, _, err = invoke("train", "-c", str(config), "--run-dir", str(run))
    assert code == 0, err
    return config, run


@pytest.fixture
def math_base(tmp_path: Path) -> Path:
    return train_math_base(tmp_path)[1]


def test_one_expert_per_task_tied_to_its_base(math_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "experts"
    code, stdout, err = invoke(
        "adapt", "experts", "--checkpoint", str(math_base), "--tasks", "add,mul",
        "--out", str(out), "--steps", "3", "--classifier-steps", "4",
    )  # fmt: skip
    assert code == 0, err
    assert "2 expert(s) and a classifier" in stdout
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert sorted(manifest["experts"]) == ["add", "mul"]
    classifier = manifest["classifier"]
    assert classifier["file"] == "classifier.safetensors" and classifier["steps"] == 4
    assert sorted(classifier["labels"]) == ["add", "mul"]  # the dispatch prompt it learned
    base, _, _ = load_trained_model(resolve_checkpoint(math_base))
    assert manifest["fingerprint"] == base_fingerprint(base)  # of the base, not the expert
    experts = {t: load_expert(out / e["file"], fingerprint=manifest["fingerprint"])
               for t, e in manifest["experts"].items()}  # fmt: skip
    for zs in experts.values():
        assert zs and all(name.startswith("blocks.") for name in zs)
        assert any(not torch.equal(z, torch.ones_like(z)) for z in zs.values())  # trained
    assert any(
        not torch.equal(experts["add"][name], experts["mul"][name]) for name in experts["add"]
    )
    with pytest.raises(ValueError, match="fingerprint"):
        load_expert(out / "add.safetensors", fingerprint="0" * 16)
    zc = load_expert(out / "classifier.safetensors", fingerprint=manifest["fingerprint"])
    assert set(zc) == set(experts["add"])  # the same layers as the experts


def test_no_classifier_leaves_it_out(math_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "experts"
    code, _, err = invoke(
        "adapt", "experts", "--checkpoint", str(math_base), "--tasks", "add",
        "--out", str(out), "--steps", "2", "--no-classifier",
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert "classifier" not in manifest and not (out / "classifier.safetensors").exists()


def test_a_task_that_is_not_one_is_refused_before_training(math_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "experts"
    code, _, err = invoke(
        "adapt", "experts", "--checkpoint", str(math_base), "--tasks", "add,divide",
        "--out", str(out),
    )  # fmt: skip
    assert code != 0
    assert "divide" in err and "linear" in err  # names the value and the choices
    assert not out.exists()


def test_experts_trained_by_reinforce_record_it(math_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "experts"
    code, _, err = invoke(
        "adapt", "experts", "--checkpoint", str(math_base), "--tasks", "add",
        "--out", str(out), "--steps", "2", "--no-classifier", "--objective", "reinforce",
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["objective"] == "reinforce"
    rows = [json.loads(line) for line in (out / "runs" / "add" / "metrics.jsonl").open()]
    assert any("reward_acc" in row for row in rows if row["event"] == "train")


def test_each_expert_is_evaluated_on_its_own_task(math_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "experts"
    code, _, err = invoke(
        "adapt", "experts", "--checkpoint", str(math_base), "--tasks", "mul",
        "--out", str(out), "--steps", "2", "--no-classifier",
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["experts"]["mul"]
    levels = {k.split("_")[2] for k in metrics["metrics"] if k.startswith("acc_id_L")}
    assert levels == {"L3"}  # mul lives at level 3 only; the base mix also had level 2
    assert not any(k.endswith(("_add", "_sub")) for k in metrics["metrics"])
