"""`neat index train-embedder` end to end: pairs from a real index, a real training run through
the CLI, exact resume, and the result used as `indexing.embedder: {type: neat}`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.config.indexing import IndexingConfig, NeatEmbedderConfig
from neat.errors import ConfigError
from neat.indexing import MarkdownIndexer
from neat.indexing.embedders import build_embedder
from neat.indexing.neat_embedder import NeatEmbedder
from neat.models.bi_encoder import BiEncoder, BiEncoderConfig
from tests.indexing.books import book_index

CHAPTERS = (
    "ch02-00-guessing-game-tutorial.md",
    "ch03-02-data-types.md",
    "ch09-01-unrecoverable-errors-with-panic.md",
)
SMALL = [
    *("--set", "model.n_embd=32", "--set", "model.n_head=2", "--set", "model.block_size=64"),
    *("--set", "data.tokenizer.vocab_size=400", "--set", "training.batch_size=8"),
    *("--set", "training.device=cpu", "--set", "monitoring.log_interval=1"),
    *("--set", "optimization.warmup_steps=1", "--set", "optimization.decay_steps=6"),
    *("--set", "checkpoint.interval=3", "--set", "evaluation.interval=3"),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return book_index(tmp_path_factory.mktemp("book"), CHAPTERS)


def train(db: Path, out: Path, *extra: str) -> dict[int, float]:
    args = ["index", "train-embedder", "--db", str(db), "--out", str(out), "--steps", "6"]
    result = CliRunner().invoke(cli, [*args, *SMALL, *extra])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["event"] == "train"}


@pytest.fixture(scope="module")
def trained(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("embedder")
    train(db, out, "--set", "model.n_layer=1")
    return out


def test_a_run_writes_pairs_config_checkpoints_and_retrieval_figures(trained: Path) -> None:
    assert (trained / "pairs" / "train.jsonl").stat().st_size > 0
    assert (trained / "pairs" / "val.jsonl").stat().st_size > 0
    config = yaml.safe_load((trained / "embedder.yaml").read_text())
    assert config["model"]["type"] == "bi_encoder" and config["data"]["type"] == "pairs"
    rows = [json.loads(x) for x in (trained / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6]
    for row in evals:
        assert 0.0 <= row["recall_at_1"] <= row["recall_at_10"] <= 1.0
        assert row["val_loss"] > 0
    assert (trained / "run" / "checkpoints" / "step_6" / "model.safetensors").exists()


def test_training_resumes_exactly(db: Path, tmp_path: Path) -> None:
    whole = train(db, tmp_path / "whole", "--set", "model.n_layer=0")
    assert len(whole) == 6
    parts = tmp_path / "parts"
    train(db, parts, "--set", "model.n_layer=0", "--set", "training.max_steps=3")
    resumed = train(db, parts, "--set", "model.n_layer=0", "--resume", "auto")
    assert resumed == whole  # bit for bit: same batches, same states


def test_the_trained_embedder_serves_dense_search(trained: Path, db: Path, tmp_path: Path) -> None:
    embedder = build_embedder(NeatEmbedderConfig(path=str(trained)))
    assert isinstance(embedder, NeatEmbedder)
    vectors = embedder.embed(["integer types and overflow", "a panic unwinds the stack", ""])
    assert vectors.shape == (3, embedder.dim) == (3, 32)
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert embedder.max_tokens == 64
    assert embedder.token_count(["ownership"])[0] >= 1
    root = db.parent / db.stem
    with MarkdownIndexer(tmp_path / "dense.db", IndexingConfig(), embedder=embedder) as indexer:
        indexer.build([root])
        hits = indexer.search("integer overflow", k=5, mode="dense")
        assert len(hits) == 5 and hits[0].score >= hits[-1].score
        assert indexer.search("integer overflow", k=5, mode="hybrid")


def test_embedding_is_the_same_batched_or_alone(trained: Path) -> None:
    embedder = NeatEmbedder(trained, batch_size=2)
    texts = ["a short one", "a much longer text about strings and their UTF-8 bytes", "x"]
    together = embedder.embed(texts)
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)  # padding never leaks into the vector


def test_an_index_built_with_another_embedder_is_refused(
    db: Path, trained: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    train(db, other, "--set", "model.n_layer=0", "--seed", "1")
    root = db.parent / db.stem
    index = tmp_path / "one.db"
    with MarkdownIndexer(index, IndexingConfig(), embedder=NeatEmbedder(trained)) as indexer:
        indexer.build([root])
    with (
        MarkdownIndexer(index, IndexingConfig(), embedder=NeatEmbedder(other)) as indexer,
        pytest.raises(ConfigError, match="embedder"),
    ):
        indexer.search("ownership", k=3, mode="dense")


def test_a_missing_folder_and_a_missing_index_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train-embedder"):
        NeatEmbedder(tmp_path / "nope")
    result = CliRunner().invoke(cli, ["index", "train-embedder", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "neat index build" in result.output
    assert not (tmp_path / "embedder").exists()  # nothing written


def test_the_config_refuses_a_bi_encoder_without_pairs(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("hello world " * 50)
    raw = {"model": {"type": "bi_encoder"}, "data": {"type": "text", "path": str(text)}}
    with pytest.raises(ConfigError, match="pairs"):
        load_config(raw=raw)


def test_padding_rows_and_missing_negatives_do_not_change_the_loss() -> None:
    torch.manual_seed(0)
    model = BiEncoder(BiEncoderConfig(n_layer=1, n_embd=16, n_head=2, block_size=8), 50)
    pad = model.pad_id
    queries = torch.tensor([[1, 2, 3, pad], [4, 5, pad, pad]])
    own = torch.tensor([[[6, 7, 8]], [[9, 10, 11]]])
    base = model(queries, own)["loss"]
    # a second slot of padding only (no mined negative) and wider padding: the same loss
    wider = torch.full((2, 2, 5), pad)
    wider[:, 0, :3] = own[:, 0]
    assert torch.allclose(model(queries, wider)["loss"], base, atol=1e-6)


def test_doc2query_with_too_few_headings_trains_on_the_other_pairs(
    db: Path, tmp_path: Path
) -> None:
    out = tmp_path / "d2q"
    args = ["index", "train-embedder", "--db", str(db), "--out", str(out), "--steps", "3"]
    result = CliRunner().invoke(cli, [*args, "--doc2query", *SMALL])
    assert result.exit_code == 0, result.output
    kinds = {json.loads(line)["kind"] for line in (out / "pairs" / "train.jsonl").open()}
    assert "doc2query" not in kinds and "sentence" in kinds  # three chapters: < 32 headings
    assert not any((out / "doc2query").glob("run-*"))  # no query LM was trained
