"""`neat index train-embedder --init DIR`: a local sentence-transformers model fine-tuned on
pairs from a real index, through the CLI, then served by neat and by sentence-transformers.

The model is the tiny offline BERT of tests/indexing/tiny_models.py (no download)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.config.indexing import IndexingConfig, NeatEmbedderConfig
from neat.data.tokenizers import load_tokenizer
from neat.errors import ConfigError
from neat.indexing import MarkdownIndexer
from neat.indexing.embedders import SentenceTransformerEmbedder, build_embedder
from neat.interfaces.contexts import ModelContext
from neat.models.bi_encoder import BiEncoderConfig, build_bi_encoder
from neat.models.st_bi_encoder import SentenceTransformerBiEncoder
from tests.indexing.books import RUST_BOOK, book_index
from tests.indexing.tiny_models import TINY_MAX_SEQ_LENGTH, build_tiny_sentence_transformer

CHAPTERS = ("ch03-02-data-types.md", "ch09-01-unrecoverable-errors-with-panic.md")
FAST = [
    *("--set", "training.batch_size=8", "--set", "training.device=cpu"),
    *("--set", "optimization.lr=3e-3", "--set", "optimization.min_lr=3e-4"),
    *("--set", "optimization.warmup_steps=1", "--set", "model.block_size=64"),
    *("--set", "checkpoint.interval=4", "--set", "evaluation.interval=4"),
]
TEXTS = [
    "Markdown documents are split into sections at their headings.",
    "the index",
    "BM25 ranks documents by term frequency and inverse document frequency " * 20,
]


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return book_index(tmp_path_factory.mktemp("book"), CHAPTERS)


@pytest.fixture(scope="module")
def tuned(db: Path, tiny_st: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tuned")
    args = ["index", "train-embedder", "--db", str(db), "--out", str(out), "--steps", "8"]
    result = CliRunner().invoke(cli, [*args, "--init", str(tiny_st), *FAST])
    assert result.exit_code == 0, result.output
    assert "sentence-transformers folder" in result.output
    return out


def wrapped(tiny_st: Path) -> tuple[SentenceTransformerBiEncoder, list[list[int]]]:
    tokenizer = load_tokenizer(tiny_st / "tokenizer.json")
    model = build_bi_encoder(
        BiEncoderConfig(sentence_transformer=str(tiny_st), block_size=256),
        ModelContext(vocab_size=tokenizer.vocab_size),
    )
    assert isinstance(model, SentenceTransformerBiEncoder)
    return model.eval(), [tokenizer.encode(text) for text in TEXTS]


def test_the_wrapper_embeds_as_sentence_transformers_does(tiny_st: Path) -> None:
    model, ids = wrapped(tiny_st)
    assert model.max_text_tokens == TINY_MAX_SEQ_LENGTH - 2  # [CLS] and [SEP] fit too
    width = max(len(row) for row in ids) + 3  # padded past the longest, which is cut
    batch = torch.full((len(ids), width), model.pad_id)
    for i, row in enumerate(ids):
        batch[i, : len(row)] = torch.tensor(row)
    with torch.no_grad():
        ours = model(batch)["embeddings"].numpy()
    reference = model.st.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_fine_tuning_changes_the_weights_and_lowers_the_held_out_loss(
    tuned: Path, tiny_st: Path
) -> None:
    config = yaml.safe_load((tuned / "embedder.yaml").read_text())
    assert config["model"]["sentence_transformer"] == str(tiny_st)
    assert config["data"]["tokenizer"] == {"type": "hf", "path": str(tiny_st / "tokenizer.json")}
    rows = [json.loads(x) for x in (tuned / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["val_loss"] for r in rows if r["event"] == "eval"]
    assert len(losses) == 2 and losses[-1] < losses[0]


def test_the_result_serves_through_neat_and_sentence_transformers_alike(
    tuned: Path, tiny_st: Path, db: Path, tmp_path: Path
) -> None:
    neat_side = build_embedder(NeatEmbedderConfig(path=str(tuned)))
    st_side = SentenceTransformerEmbedder(tuned / "sentence-transformer")
    base = SentenceTransformerEmbedder(tiny_st)
    texts = TEXTS  # the long one cut at the same place by both
    np.testing.assert_allclose(neat_side.embed(texts), st_side.embed(texts), atol=1e-5)
    assert not np.allclose(st_side.embed(texts), base.embed(texts), atol=1e-4)  # trained
    assert neat_side.dim == 32 and neat_side.max_tokens == 64 - 2  # model.block_size=64

    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(RUST_BOOK / CHAPTERS[1], docs / CHAPTERS[1])
    config = IndexingConfig(embedder=NeatEmbedderConfig(path=str(tuned)), mode="hybrid")
    with MarkdownIndexer(tmp_path / "dense.db", config, embedder=neat_side) as indexer:
        indexer.build([docs])
        hits = indexer.search("unrecoverable errors with panic", k=3, mode="dense")
    assert len(hits) == 3 and all(hit.path.endswith(CHAPTERS[1]) for hit in hits)


def test_a_folder_that_is_not_a_sentence_transformer_is_refused(db: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    args = ["index", "train-embedder", "--db", str(db), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--init", str(tmp_path / "empty")])
    assert result.exit_code != 0
    assert "--init" in result.output and "modules.json" in result.output
    assert not out.exists()  # refused before any pairs or config were written


def test_an_existing_scratch_config_is_not_silently_fine_tuned(
    db: Path, tiny_st: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "embedder.yaml").write_text("model: {type: bi_encoder}\n")
    args = ["index", "train-embedder", "--db", str(db), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--init", str(tiny_st)])
    assert result.exit_code != 0
    assert "from scratch" in result.output and str(out / "embedder.yaml") in result.output


def test_the_model_needs_its_own_tokenizer(tiny_st: Path, tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"query": "q", "passage": "p", "chunk_id": 1, '
                                      '"kind": "heading"}\n')  # fmt: skip
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"type": "bi_encoder", "sentence_transformer": str(tiny_st)},
                "data": {"type": "pairs", "path": str(tmp_path / "p.jsonl")},
                "evaluation": {"type": "retrieval", "path": str(tmp_path / "p.jsonl")},
            }
        )
    )
    with pytest.raises(ConfigError, match=r"data\.tokenizer: \{type: hf"):
        load_config(config)
