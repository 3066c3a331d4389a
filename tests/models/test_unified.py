"""The unified NEAT model (`model.type: neat`): every on/off combination of its components
builds, trains and is causal, and the combinations that cannot work are refused."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.config.components import check_components
from neat.interfaces.contexts import ModelContext
from neat.models.blt.model import BLT
from neat.models.gpt import GPT
from neat.models.titans.model import Titans
from neat.models.unified import NEATConfig, build_neat
from neat.models.unified.model import MemoryBlock

ARCHITECTURES = [
    dict(zip(("blt", "titans"), flags, strict=True))
    for flags in itertools.product((False, True), repeat=2)
]
MATH = {"type": "synthetic_math", "num_train": 80, "tokenizer": {"type": "byte"}}
GRID = {
    "type": "grid_world",
    "num_train": 40,
    "reasoning": "interleaved",
    "format": "prompt_response",
    "tokenizer": {"type": "image_text", "codes": 7},
}


def small(components: dict[str, Any], block_size: int = 64) -> dict[str, Any]:
    return {
        "type": "neat",
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 32,
        "block_size": block_size,
        "components": {
            **components,
            **(
                {"titans": {"segment": 16, "memory": {"chunk_size": 8}}}
                if components.get("titans")
                else {}
            ),
            **({"blt": {"local_dim": 32, "hash_buckets": 64}} if components.get("blt") else {}),
        },
    }


def experiment(tmp_path: Path, model: dict[str, Any], data: dict[str, Any], **more: Any) -> Path:
    config = {
        "model": model,
        "data": data,
        "training": {"max_steps": 3, "batch_size": 2, "device": "cpu"},
        "evaluation": {"interval": 3, "batches": 1},
        "monitoring": {"log_interval": 1},
        **more,
    }
    path = tmp_path / f"exp{len(list(tmp_path.glob('exp*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def train(config: Path, run: Path) -> tuple[int, str, list[dict[str, Any]]]:
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--run-dir", str(run)])
    rows = []
    if (run / "metrics.jsonl").exists():
        rows = [json.loads(line) for line in (run / "metrics.jsonl").open(encoding="utf-8")]
    return result.exit_code, result.stderr, rows


@pytest.mark.parametrize(
    "flags", ARCHITECTURES, ids=lambda f: "+".join(k for k, v in f.items() if v) or "none"
)
def test_each_architecture_is_the_right_model_and_causal(flags: dict[str, bool]) -> None:
    cfg = NEATConfig.model_validate(small(flags))
    torch.manual_seed(0)
    model = build_neat(cfg, ModelContext(vocab_size=256)).eval()
    expected = {(False, False): GPT, (False, True): Titans, (True, False): BLT, (True, True): BLT}
    assert isinstance(model, expected[flags["blt"], flags["titans"]])
    memory_blocks = [m for m in model.modules() if isinstance(m, MemoryBlock)]
    assert bool(memory_blocks) == (flags["blt"] and flags["titans"])
    x = torch.randint(0, 256, (2, 64))
    changed = x.clone()
    changed[:, 40:] = (changed[:, 40:] + 1) % 256
    with torch.no_grad():
        before, after = model(x)["logits"], model(changed)["logits"]
    assert torch.allclose(before[:, :40], after[:, :40], atol=1e-5)
    assert not torch.allclose(before[:, 40:], after[:, 40:])


@pytest.mark.parametrize(
    "flags", ARCHITECTURES, ids=lambda f: "+".join(k for k, v in f.items() if v) or "none"
)
def test_each_architecture_trains(flags: dict[str, bool], tmp_path: Path) -> None:
    code, err, rows = train(experiment(tmp_path, small(flags), MATH), tmp_path / "run")
    assert code == 0, err
    losses = [row["loss"] for row in rows if row["event"] == "train"]
    assert len(losses) == 3 and all(loss == loss for loss in losses)


def test_svf_adapts_a_trained_unified_base(tmp_path: Path) -> None:
    model = small({"titans": True})
    code, err, _ = train(experiment(tmp_path, model, MATH), tmp_path / "base")
    assert code == 0, err
    adapted = {
        **model,
        "init_from": str(tmp_path / "base"),
        "components": {**model["components"], "svf": True},
    }
    config = experiment(tmp_path, adapted, MATH)
    assert load_config(config).finetune.method == "svf"
    code, err, _ = train(config, tmp_path / "svf")
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "svf" / "config.yaml").read_text())
    assert saved["finetune"]["method"] == "svf" and saved["finetune"]["targets"] == ["blocks.*"]


@pytest.mark.parametrize("blt", [False, True], ids=["tokens", "blt"])
def test_mvot_adds_the_discrepancy_loss(blt: bool, tmp_path: Path) -> None:
    model = small({"titans": True, "blt": blt, "mvot": {"discrepancy_weight": 0.5}}, block_size=512)
    config = experiment(tmp_path, model, GRID)
    assert load_config(config).mvot.discrepancy_weight == 0.5
    code, err, rows = train(config, tmp_path / "run")
    assert code == 0, err
    assert next(row for row in rows if row["event"] == "train")["discrepancy"] > 0


@pytest.mark.parametrize(
    ("model", "data", "more", "message"),
    [
        (small({"mvot": True}), MATH, {}, "it needs an image tokenizer"),
        (small({"svf": True}), MATH, {}, "model.init_from is not set"),
        (
            small({"blt": True}),
            {**MATH, "tokenizer": {"type": "char"}},
            {},
            "components.blt reads bytes",
        ),
        (
            {**small({"svf": True}), "init_from": "runs/x"},
            MATH,
            {"finetune": {"method": "lora"}},
            "remove finetune.method",
        ),
        (small({}), MATH, {"finetune": {"method": "svf"}}, "turn it on there"),
        (small({"mvot": True}), GRID, {"mvot": {"discrepancy_weight": 2.0}}, "set it in one place"),
    ],
    ids=[
        "mvot-no-images",
        "svf-no-base",
        "blt-not-bytes",
        "svf-and-lora",
        "svf-outside",
        "mvot-twice",
    ],
)
def test_combinations_that_cannot_work_are_refused(
    tmp_path: Path, model: dict[str, Any], data: dict[str, Any], more: dict[str, Any], message: str
) -> None:
    code, err, _ = train(experiment(tmp_path, model, data, **more), tmp_path / "run")
    assert code == 2
    assert message in " ".join(err.split())
    assert not (tmp_path / "run").exists()


def test_risky_combinations_are_named() -> None:
    def warnings(model: dict[str, Any], data: dict[str, Any]) -> set[str]:
        from neat.config import validate_config

        config = validate_config({"model": model, "data": data})
        return {warning.component for warning in check_components(config)}

    assert warnings(small({}), MATH) == {"blt"}  # bytes one position each
    assert warnings(small({"blt": True}), MATH) == set()
    assert warnings(small({"titans": True}, block_size=16), MATH) == {"blt", "titans"}
    assert "mvot" in warnings(small({"blt": True, "mvot": True}, block_size=512), GRID)
