"""Values that pydantic alone would accept silently: booleans for counts, infinities, ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from neat.config import OptimizerConfig, load_config, register_component
from neat.errors import ConfigError


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("data: {path: c.txt}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "override",
    [
        "training.max_steps=true",
        "training.batch_size=true",
        "training.grad_accum_steps=yes",
        "training.seed=false",
        "training.prefetch_batches=true",
        "checkpoint.interval=true",
        "checkpoint.keep_last=true",
        "monitoring.log_interval=true",
        "evaluation.interval=true",
        "evaluation.batches=true",
        "model.n_layer=true",
        "model.n_embd=true",
        "model.block_size=true",
        "model.vocab_size=true",
        "model.dropout=false",
        "optimization.lr=true",
        "optimization.warmup_steps=true",
        "optimization.decay_steps=true",
        "data.val_fraction=true",
        "data.sources.0.weight=true",
        "indexing.chunking.max_chars=true",
    ],
)
def test_a_boolean_is_not_a_number(config: Path, override: str) -> None:
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}: expected a number, not true/false"):
        load_config(config, [override])


def test_a_boolean_in_a_list_of_counts_and_in_a_plugin_section(config: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.hash_ngram_sizes: expected a number"):
        load_config(config, ["model={type: blt, hash_ngram_sizes: [3, true]}"])

    class PluginOptimizer(OptimizerConfig):
        type: str = "plugin-opt-values"
        steps: int = 3

    register_component("optimization", PluginOptimizer, lambda cfg, ctx: None)
    with pytest.raises(ConfigError, match=r"optimization.steps: expected a number"):
        load_config(config, ["optimization={type: plugin-opt-values, steps: true}"])


@pytest.mark.parametrize(
    "override",
    [
        "optimization.lr=.inf",
        "optimization.min_lr=.nan",
        "optimization.eps=.inf",
        "optimization.weight_decay=.inf",
        "optimization.grad_clip=.inf",
        "optimization.beta1=.nan",
        "model.dropout=.nan",
        "data.val_fraction=.nan",
        "data.sources.0.weight=.inf",
    ],
)
def test_floats_must_be_finite(config: Path, override: str) -> None:
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}: Input should be a finite number"):
        load_config(config, [override])


def test_json_infinity_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"data": {"path": "c.txt"}, "optimization": {"lr": Infinity}}')
    with pytest.raises(ConfigError, match=r"optimization.lr: Input should be a finite number"):
        load_config(path)


def test_min_lr_above_lr_names_both_values(config: Path) -> None:
    with pytest.raises(ConfigError, match=r"min_lr \(0.01\) is above lr \(0.001\)"):
        load_config(config, ["optimization.lr=1.0e-3", "optimization.min_lr=1.0e-2"])
    cfg = load_config(config, ["optimization.lr=1.0e-3", "optimization.min_lr=1.0e-3"])
    assert cfg.optimization.min_lr == cfg.optimization.lr  # a constant rate is fine


@pytest.mark.parametrize(
    ("seed", "message"),
    [("-1", "greater than or equal to 0"), (str(2**63), f"less than {2**63}")],
)
def test_seed_outside_0_to_2_63_is_refused_at_load(config: Path, seed: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"training.seed: Input should be {message}"):
        load_config(config, [f"training.seed={seed}"])
    assert load_config(config, [f"training.seed={2**63 - 1}"]).training.seed == 2**63 - 1


def test_ordinary_values_still_pass(config: Path) -> None:
    cfg = load_config(
        config,
        ["training.max_steps=5", "optimization.lr=3e-4", "training.compile=true", "model.bias=no"],
    )
    assert cfg.training.max_steps == 5 and cfg.optimization.lr == pytest.approx(3e-4)
    assert cfg.training.compile is True and cfg.model.bias is False
