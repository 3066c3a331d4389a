"""The parameter-matched GPT baseline: counts from meta builds, the matched config, the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from neat.cli import cli
from neat.config import ExperimentConfig, ModelConfig, build, load_config
from neat.errors import ConfigError
from neat.interfaces.contexts import ModelContext
from neat.models.baseline import count_params, matched_baseline, vocab_size_of
from neat.models.blocks import TransformerConfig
from neat.models.blt.config import BLTConfig
from neat.models.gpt import GPTConfig
from neat.models.titans.config import TitansConfig

VOCAB = 257

COMMON = """\
data: {type: text, path: corpus.txt, tokenizer: {type: TOKENIZER}, val_fraction: 0.1}
optimization: {lr: 1.0e-3, min_lr: 1.0e-4, warmup_steps: 5, decay_steps: 100}
training: {max_steps: 30, batch_size: 4, seed: 7, device: cpu}
evaluation: {interval: 10, batches: 2}
monitoring: {log_interval: 1}
checkpoint: {interval: 10, keep_last: 2}
"""
BLT_YAML = (
    "name: tiny-blt\n"
    "model: {type: blt, block_size: 32, local_dim: 16, local_heads: 2, global_dim: 32,\n"
    "        global_heads: 2, global_layers: 2, hash_buckets: 64, dropout: 0.1}\n"
    + COMMON.replace("TOKENIZER", "byte")
)
TITANS_YAML = (
    "name: tiny-titans\n"
    "model: {type: titans, n_layer: 2, n_head: 2, n_embd: 32, block_size: 16, segment: 8,\n"
    "        persistent_tokens: 2, memory: {chunk_size: 4}}\n" + COMMON.replace("TOKENIZER", "char")
)
KEPT = ("data", "optimization", "training", "evaluation", "checkpoint", "monitoring")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a busy machine: a second thread only adds synchronisation."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def real_count(cfg: ModelConfig, vocab_size: int) -> int:
    model = build("model", cfg, ModelContext(vocab_size=vocab_size))
    return sum(p.numel() for p in model.parameters())  # a tied weight is yielded once


@pytest.mark.parametrize(
    "cfg",
    [
        GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32),
        GPTConfig(n_layer=1, n_head=2, n_embd=16, tie_embeddings=False),
        BLTConfig(
            block_size=32,
            local_dim=16,
            local_heads=2,
            global_dim=32,
            global_heads=2,
            global_layers=2,
            hash_buckets=64,
        ),
        TitansConfig(
            n_layer=2,
            n_head=2,
            n_embd=16,
            block_size=16,
            segment=8,
            persistent_tokens=2,
            memory={"chunk_size": 4},  # type: ignore[arg-type]
        ),
    ],
    ids=["gpt", "gpt-untied", "blt", "titans"],
)
def test_count_params_is_the_built_models_count(cfg: ModelConfig) -> None:
    assert count_params(cfg, VOCAB) == real_count(cfg, VOCAB)


def test_gpt_count_is_affine_in_depth() -> None:
    """What the depth search relies on: identical blocks add the same count each."""
    one, two, five = (count_params(GPTConfig(n_layer=n, n_embd=48), VOCAB) for n in (1, 2, 5))
    assert five == one + 4 * (two - one)


@pytest.mark.parametrize("text", [BLT_YAML, TITANS_YAML], ids=["blt", "titans"])
def test_baseline_matches_count_and_keeps_the_rest(text: str, tmp_path: Path, corpus: Path) -> None:
    config = load_config(write(tmp_path, text))
    baseline, match = matched_baseline(config)
    vocab = vocab_size_of(config)
    assert match.target_params == count_params(config.model, vocab)
    assert match.baseline_params == count_params(baseline.model, vocab)
    assert abs(match.relative_diff) <= 0.02
    assert baseline.model.type == "gpt"
    assert isinstance(baseline.model, GPTConfig)
    assert (baseline.model.n_layer, baseline.model.n_head, baseline.model.n_embd) == (
        match.n_layer,
        match.n_head,
        match.n_embd,
    )
    assert baseline.model.block_size == config.model.block_size
    assert isinstance(config.model, TransformerConfig)
    assert baseline.model.dropout == config.model.dropout
    assert baseline.name == f"{config.name}-baseline"
    for section in KEPT:
        assert getattr(baseline, section) == getattr(config, section), section
    assert baseline.finetune == ExperimentConfig.model_fields["finetune"].get_default(
        call_default_factory=True
    )


def test_vocab_size_is_the_tokenizers_unless_the_model_sets_it(
    tmp_path: Path, corpus: Path
) -> None:
    config = load_config(write(tmp_path, TITANS_YAML))
    chars = len(set(corpus.read_text(encoding="utf-8")))
    assert vocab_size_of(config) >= chars
    assert vocab_size_of(load_config(write(tmp_path, BLT_YAML))) == VOCAB
    pinned = load_config(write(tmp_path, TITANS_YAML), ["model.vocab_size=300"])
    assert vocab_size_of(pinned) == 300
    assert not (tmp_path / "runs").exists() and not Path("runs/tiny-titans").exists()


def test_an_impossible_tolerance_names_the_target(tmp_path: Path, corpus: Path) -> None:
    config = load_config(write(tmp_path, BLT_YAML))
    target = count_params(config.model, VOCAB)
    with pytest.raises(ConfigError, match=f"{target:,}"):
        matched_baseline(config, tolerance=1e-9, vocab_size=VOCAB)


def test_cli_writes_a_config_that_trains(tmp_path: Path, corpus: Path) -> None:
    config = write(tmp_path, BLT_YAML)
    out = tmp_path / "elsewhere" / "baseline.yaml"  # another folder: its paths must still hold
    runner = CliRunner()
    result = runner.invoke(cli, ["baseline", "-c", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "target" in result.output and "n_embd" in result.output and "%" in result.output
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert written["model"]["type"] == "gpt"
    assert Path(written["data"]["sources"][0]["path"]) == corpus.resolve()

    again = runner.invoke(cli, ["baseline", "-c", str(config), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    forced = runner.invoke(cli, ["baseline", "-c", str(config), "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output

    run = tmp_path / "run"
    args = ["train", "-c", str(out), "--run-dir", str(run), "--set", "training.max_steps=2"]
    trained = runner.invoke(cli, args)
    assert trained.exit_code == 0, trained.output
    assert any(run.rglob("step_*"))


def test_cli_json_and_impossible_tolerance(tmp_path: Path, corpus: Path) -> None:
    config = write(tmp_path, BLT_YAML)
    runner = CliRunner()
    result = runner.invoke(cli, ["baseline", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert '"baseline_params"' in result.output
    target = count_params(load_config(config).model, VOCAB)
    failed = runner.invoke(cli, ["baseline", "-c", str(config), "--tolerance", "1e-9"])
    assert failed.exit_code == 2
    assert "Error:" in failed.output and f"{target:,}" in failed.output
