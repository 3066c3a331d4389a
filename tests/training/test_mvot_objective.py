"""The MVoT objective on a real GPT: CE plus weight x L_D, with its parts logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.interfaces import Batch
from neat.models.gpt import GPT, GPTConfig
from neat.models.mvot.discrepancy import codebook_distances, token_discrepancy_loss
from neat.training.mvot import DiscrepancyObjective
from neat.training.objectives import NextTokenLoss

VOCAB, K = 40, 6
IMAGE_IDS = torch.arange(VOCAB - K, VOCAB)  # the last K ids are image codes


def setup() -> tuple[GPT, Batch, torch.Tensor]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16), vocab_size=VOCAB)
    x = torch.randint(0, VOCAB, (2, 12))
    y = torch.randint(0, VOCAB - K, (2, 12))
    y[:, 4:8] = IMAGE_IDS[torch.randint(0, K, (2, 4))]  # an image in the middle of the text
    distances = codebook_distances(torch.randn(K, 3))
    return model, Batch(x, y), distances


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_the_loss_is_ce_plus_the_weighted_discrepancy(weight: float) -> None:
    model, batch, distances = setup()
    objective = DiscrepancyObjective(image_code_ids=IMAGE_IDS, distances=distances, weight=weight)
    out = model(batch.input_ids, batch.targets)
    l_d = token_discrepancy_loss(out["logits"], batch.targets, IMAGE_IDS, distances)
    assert float(l_d.detach()) > 0
    loss = objective.loss(model, batch)
    assert torch.allclose(loss, out["loss"] + weight * l_d)
    if weight == 0.0:
        assert torch.equal(loss, NextTokenLoss().loss(model, batch))
    logged = objective.metrics()
    assert logged == pytest.approx(
        {"ce": float(out["loss"].detach()), "discrepancy": float(l_d.detach())}
    )
    assert objective.metrics() == {}  # drained


# -- through the CLI: interleaved documents with the grid world's tile codes ---------------------


def write_config(tmp_path: Path, codes: int, tokenizer: str = "image_text") -> Path:
    from neat.data.image_text import image_segment

    lines = [f"step {i}: right\n" + image_segment([i % 7, 0, 1, 2, 3]) + "\n" for i in range(50)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(lines) * 20, encoding="utf-8")
    config = tmp_path / "c.yaml"
    tok = f"{{type: image_text, codes: {codes}}}" if tokenizer == "image_text" else "{type: byte}"
    config.write_text(
        "model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 16, block_size: 32}\n"
        f"data: {{type: text, path: {corpus}, tokenizer: {tok}}}\n"
        "training: {max_steps: 4, batch_size: 4, device: cpu}\n"
        "evaluation: {interval: 4, batches: 1}\n"
        "monitoring: {log_interval: 1}\n"  # the log's loss is the step's own
        "mvot: {discrepancy_weight: 1.0}\n",
        encoding="utf-8",
    )
    return config


def train(config: Path, run: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--run-dir", str(run)])
    return result.exit_code, result.stderr


def test_a_run_with_the_discrepancy_loss_logs_both_parts(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, err = train(write_config(tmp_path, codes=7), run)
    assert code == 0, err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open(encoding="utf-8")]
    train_rows = [row for row in rows if row["event"] == "train"]
    assert [row["step"] for row in train_rows] == [1, 2, 3, 4]
    for row in train_rows:
        assert row["discrepancy"] > 0 and row["ce"] > 0
        assert row["loss"] == pytest.approx(row["ce"] + row["discrepancy"], rel=1e-4)


def test_the_discrepancy_loss_without_image_codes_is_a_config_error(tmp_path: Path) -> None:
    code, err = train(write_config(tmp_path, codes=7, tokenizer="byte"), tmp_path / "run")
    assert code != 0
    assert "mvot.discrepancy_weight" in err and "image_text" in err
    assert not (tmp_path / "run").exists()


def test_a_codebook_of_another_size_is_named(tmp_path: Path) -> None:
    code, err = train(write_config(tmp_path, codes=9), tmp_path / "run")
    assert code != 0
    assert "codes: 9" in err and "data.tokenizer.codes: 7" in err


def test_the_discrepancy_loss_with_the_fused_loss_is_a_config_error(tmp_path: Path) -> None:
    """The fused head never materialises the logits that L_D weighs."""
    config = write_config(tmp_path, codes=7)
    args = ["train", "-c", str(config), "--run-dir", str(tmp_path / "run"),
            "--set", "training.fused_loss=true"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "training.fused_loss: false" in result.stderr
    assert not (tmp_path / "run").exists()
