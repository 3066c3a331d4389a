"""Two-pass inference with SVF experts: `neat eval/generate --experts DIR --adapt ...`.

One tiny synthetic math base (6 steps) and two experts (3 steps each) with a classifier
(10 steps) serve the whole file: the numbers are meaningless, the wiring is what is tested.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from neat.dispatch import (
    cem_mixture,
    few_shot_problems,
    load_expert_set,
    route,
    using_z,
)
from neat.models.adapters.svf import base_fingerprint, mix_experts, save_expert, svf_z

from .test_adapt_experts import invoke, train_math_base

ADD_ONLY = "data.operations=[add]"  # every evaluation problem is an addition


def eval_json(*args: str) -> dict[str, object]:
    code, out, err = invoke("eval", *args, "--json")
    assert code == 0, err
    metrics: dict[str, object] = json.loads(out)
    return metrics


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(config, base run, experts folder)."""
    root = tmp_path_factory.mktemp("dispatch")
    config, base = train_math_base(root)
    experts = root / "experts"
    code, _, err = invoke(
        "adapt", "experts", "--checkpoint", str(base), "--tasks", "add,mul",
        "--out", str(experts), "--steps", "3", "--classifier-steps", "10",
    )  # fmt: skip
    assert code == 0, err
    return config, base, experts


@pytest.mark.parametrize("adapt", ["none", "oracle", "prompt", "classifier", "cem"])
def test_each_strategy_reports_its_metrics(setup: tuple[Path, Path, Path], adapt: str) -> None:
    config, base, experts = setup
    metrics = eval_json(
        "-c", str(config), "--checkpoint", str(base), "--experts", str(experts),
        "--adapt", adapt, "--shots", "4", "--cem-iterations", "2", "--cem-population", "4",
    )  # fmt: skip
    assert metrics["adapt"] == adapt
    for key in ("acc", "acc_id", "acc_ood", "val_loss", "task_acc_add", "task_acc_mul"):
        assert 0 <= float(metrics[key]) < (10 if "loss" in key else 1.0 + 1e-9), key  # type: ignore[arg-type]
    if adapt in ("oracle", "prompt", "classifier"):
        assert 0 <= float(metrics["dispatch_acc"]) <= 1  # type: ignore[arg-type]
        assert {"dispatch_acc_add", "dispatch_acc_mul"} <= set(metrics)
    if adapt == "oracle":
        assert metrics["dispatch_acc"] == 1.0
    if adapt == "cem":
        weights = metrics["cem_weights"]
        assert isinstance(weights, dict) and sorted(weights) == ["add", "mul"]
        assert all(w >= 0 for w in weights.values())
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-9)  # on the simplex


def test_none_equals_the_base_evaluation(setup: tuple[Path, Path, Path]) -> None:
    config, base, experts = setup
    plain = eval_json("-c", str(config), "--checkpoint", str(base))
    none = eval_json(
        "-c", str(config), "--checkpoint", str(base), "--experts", str(experts), "--adapt", "none"
    )
    shared = set(plain) - {"step", "checkpoint"}
    assert shared and {k: none[k] for k in shared} == {k: plain[k] for k in shared}


def test_oracle_with_one_expert_equals_that_expert_evaluated_directly(
    setup: tuple[Path, Path, Path],
) -> None:
    config, base, experts = setup
    oracle = eval_json(
        "-c", str(config), "--set", ADD_ONLY, "--checkpoint", str(base),
        "--experts", str(experts), "--adapt", "oracle",
    )  # fmt: skip
    direct = eval_json(
        "-c", str(config), "--set", ADD_ONLY, "--checkpoint", str(experts / "runs" / "add")
    )  # the expert's own SVF run: its final z, the same as add.safetensors
    assert oracle["dispatch_acc"] == 1.0 and "task_acc_mul" not in oracle
    shared = set(direct) - {"step", "checkpoint"}
    for key in shared:
        assert oracle[key] == pytest.approx(direct[key], rel=1e-6, abs=1e-9), key


def test_one_hot_mixtures_give_exactly_the_experts_logits(setup: tuple[Path, Path, Path]) -> None:
    _, base, experts = setup
    loaded = load_expert_set(experts, base, "cpu")
    zs = list(loaded.experts.values())
    x = torch.tensor([loaded.tokenizer.encode("12+34=")])
    for k, expert in enumerate(zs):
        one_hot = torch.zeros(len(zs), dtype=torch.float64)
        one_hot[k] = 1.0
        with torch.no_grad(), using_z(loaded.model, expert):
            wanted = loaded.model(x)["logits"]
        with torch.no_grad(), using_z(loaded.model, mix_experts(zs, one_hot)):
            mixed = loaded.model(x)["logits"]
        assert torch.equal(mixed, wanted)
    with torch.no_grad(), using_z(loaded.model, zs[0]):
        assert not torch.equal(loaded.model(x)["logits"], wanted)  # the experts differ


def test_pass_one_leaves_the_base_weights_untouched(setup: tuple[Path, Path, Path]) -> None:
    _, base, experts = setup
    loaded = load_expert_set(experts, base, "cpu")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    fingerprint = base_fingerprint(loaded.model)
    route(loaded, ["12+34=", "7*8="], "prompt")
    route(loaded, ["12+34=", "7*8="], "classifier")
    shots = few_shot_problems(loaded.config.data.sources[0], 3)  # type: ignore[arg-type]
    cem_mixture(loaded, shots, iterations=1, population=3, elite=1)
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert base_fingerprint(loaded.model) == fingerprint
    assert all(torch.equal(z, torch.ones_like(z)) for z in svf_z(loaded.model).values())


def test_generate_prints_the_expert_prompt_dispatch_chose(setup: tuple[Path, Path, Path]) -> None:
    _, base, experts = setup
    code, out, err = invoke(
        "generate", "--checkpoint", str(base), "--experts", str(experts), "--adapt", "prompt",
        "--prompt", "12+34=", "--max-new-tokens", "4", "--temperature", "0",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("12+34=")
    chosen = [line for line in err.splitlines() if line.startswith("expert: ")]
    assert chosen and chosen[0].removeprefix("expert: ") in ("add", "mul")


def test_generate_with_cem_mixes_on_the_examples(
    setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, base, experts = setup
    examples = tmp_path / "shots.jsonl"
    examples.write_text('{"question": "12+3=", "answer": "15"}\n', encoding="utf-8")
    code, out, err = invoke(
        "generate", "--checkpoint", str(base), "--experts", str(experts), "--adapt", "cem",
        "--examples", str(examples), "--prompt", "1+2=", "--max-new-tokens", "3",
    )  # fmt: skip
    assert code == 0, err
    assert "expert: mix add=" in err and out.startswith("1+2=")


# -- errors ----------------------------------------------------------------------------------------


def _copy(experts: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(experts, copy, ignore=shutil.ignore_patterns("runs"))
    return copy


def _eval_error(config: Path, base: Path, folder: Path, *extra: str) -> str:
    code, _, err = invoke(
        "eval", "-c", str(config), "--checkpoint", str(base), "--experts", str(folder), *extra
    )
    assert code != 0
    return err


def test_a_folder_without_manifest_is_named_with_the_fix(
    setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    config, base, _ = setup
    err = _eval_error(config, base, tmp_path)
    assert str(tmp_path) in err and "manifest.json" in err and "neat adapt experts" in err


def test_experts_of_another_base_are_refused(
    setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    config, base, experts = setup
    copy = _copy(experts, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["fingerprint"] = "0" * 16
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    err = _eval_error(config, base, copy)
    assert "fingerprint" in err and "0" * 16 in err and "--checkpoint" in err


def test_an_expert_file_of_another_base_is_refused(
    setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    config, base, experts = setup
    copy = _copy(experts, tmp_path)
    loaded = load_expert_set(experts, base, "cpu")
    save_expert(copy / "mul.safetensors", loaded.experts["mul"], fingerprint="f" * 16, task="mul")
    err = _eval_error(config, base, copy)
    assert "mul.safetensors" in err and "f" * 16 in err


def test_a_missing_expert_file_is_named(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    config, base, experts = setup
    copy = _copy(experts, tmp_path)
    (copy / "add.safetensors").unlink()
    err = _eval_error(config, base, copy)
    assert "add.safetensors" in err and "is missing" in err and "neat adapt experts" in err


def test_a_config_without_exact_match_evaluation_is_refused(
    setup: tuple[Path, Path, Path],
) -> None:
    config, base, experts = setup
    err = _eval_error(config, base, experts, "--set", "evaluation={type: lm}")
    assert "exact_match" in err and "'lm'" in err


def test_adapt_without_experts_is_a_usage_error(setup: tuple[Path, Path, Path]) -> None:
    config, base, _ = setup
    code, _, err = invoke("eval", "-c", str(config), "--checkpoint", str(base), "--adapt", "cem")
    assert code == 2 and "--experts" in err
    code, _, err = invoke("generate", "--checkpoint", str(base), "--adapt", "prompt")
    assert code == 2 and "--experts" in err


def test_cem_generate_without_examples_says_what_to_pass(setup: tuple[Path, Path, Path]) -> None:
    _, base, experts = setup
    code, _, err = invoke(
        "generate", "--checkpoint", str(base), "--experts", str(experts), "--adapt", "cem"
    )
    assert code == 2 and "--examples" in err and "FILE.jsonl" in err
