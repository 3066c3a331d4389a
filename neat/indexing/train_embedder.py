"""`neat index train-embedder`: a retriever learnt from the indexed documents alone.

The pairs come from the index (`neat.indexing.pairs`); training is an ordinary neat run of
`model.type: bi_encoder` on them (config, progress, checkpoints, `--resume auto`, `neat
report`), written under OUT so that OUT is what `indexing.embedder: {type: neat, path: OUT}`
reads. The pairs are held out by chunk (a passage is either trained on or scored), so the
retrieval evaluator's figures are for passages the encoder never saw.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neat.indexing.pairs import TrainingPair, pairs_from_index, write_pairs

__all__ = [
    "EMBEDDER_CONFIG",
    "SENTENCE_TRANSFORMER_DIR",
    "PreparedEmbedderRun",
    "default_recipe",
    "prepare_embedder_run",
    "save_sentence_transformer",
]

EMBEDDER_CONFIG = "embedder.yaml"
RUN_DIR = "run"
# more training pairs from the training and held-out pairs (the held-out chunks stay unseen)
ExtraPairs = Callable[[Sequence[TrainingPair], Sequence[TrainingPair]], list[TrainingPair]]
SENTENCE_TRANSFORMER_DIR = "sentence-transformer"  # a fine-tuned model, saved for any ST tool
VAL_SHARE = 0.1  # of the chunks; their pairs are the evaluator's


def default_recipe(
    train: Path,
    val: Path,
    *,
    seed: int,
    max_steps: int,
    sentence_transformer: Path | None = None,
) -> dict[str, Any]:
    """A bag of 512-wide token vectors with learnt salience over an 8k BPE of the corpus:
    about a minute on two CPU cores for a book. Measured on the Rust book benchmark, it
    generalised better than 2- and 4-layer transformers trained from scratch on the same
    pairs (those overfit the few thousand pairs; `model.n_layer` turns them on). With
    `sentence_transformer`, that model fine-tuned at a pretrained model's learning rate."""
    if sentence_transformer is not None:
        return finetune_recipe(
            train, val, seed=seed, max_steps=max_steps, base=sentence_transformer
        )
    return {
        "name": "embedder",
        "model": {"type": "bi_encoder", "n_layer": 0, "n_head": 8, "n_embd": 512,
                  "block_size": 256, "temperature": 0.05},
        "data": {"type": "pairs", "path": str(train), "negatives": 1,
                 "tokenizer": {"type": "bpe", "vocab_size": 8192}},
        "optimization": {"type": "adamw", "lr": 1.0e-3, "min_lr": 1.0e-4,
                         "warmup_steps": min(100, max_steps // 10), "weight_decay": 0.01},
        "training": {"max_steps": max_steps, "batch_size": 64, "seed": seed, "device": "auto",
                     "precision": "auto", "compile": False},
        "evaluation": {"type": "retrieval", "path": str(val),
                       "interval": max(1, min(250, max_steps // 4))},
        "monitoring": {"log_interval": 25},
        "checkpoint": {"interval": max(1, min(500, max_steps // 2)), "keep_last": 1},
    }  # fmt: skip


def finetune_recipe(
    train: Path, val: Path, *, seed: int, max_steps: int, base: Path
) -> dict[str, Any]:
    """Sentence-BERT's fine-tuning settings (lr 2e-5, 10% warmup, batch 32) on the pairs."""
    recipe = default_recipe(train, val, seed=seed, max_steps=max_steps)
    recipe["model"] = {
        "type": "bi_encoder",
        "sentence_transformer": str(base.resolve()),
        "block_size": 256,
        "temperature": 0.05,
    }
    recipe["data"]["tokenizer"] = {"type": "hf", "path": str(base.resolve() / "tokenizer.json")}
    recipe["optimization"].update(lr=2.0e-5, min_lr=2.0e-6, warmup_steps=max(1, max_steps // 10))
    recipe["training"]["batch_size"] = 32
    return recipe  # fmt: skip


@dataclass(frozen=True)
class PreparedEmbedderRun:
    config: Path
    run_dir: Path
    pairs: dict[str, int]  # kind -> count, of the training pairs
    train_pairs: int
    val_pairs: int


def split_by_chunk(
    pairs: Sequence[TrainingPair], seed: int, share: float = VAL_SHARE
) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """A seeded `share` of the chunks, all their pairs, held out."""
    chunks = sorted({p.chunk_id for p in pairs})
    held = set(random.Random(seed).sample(chunks, max(1, round(share * len(chunks)))))
    train = [p for p in pairs if p.chunk_id not in held]
    # one pair per held-out chunk: several queries for one passage would share its label
    val = list({p.chunk_id: p for p in pairs if p.chunk_id in held}.values())
    return train, val


def prepare_embedder_run(
    db: Path,
    out: Path,
    *,
    seed: int = 0,
    max_steps: int = 300,
    negatives: int = 1,
    sentence_transformer: Path | None = None,
    extra_pairs: ExtraPairs | None = None,
) -> PreparedEmbedderRun:
    """Pairs and a config under `out`. An existing config is kept (the user's edits, and a
    run to resume); the pairs are rebuilt, which is deterministic for an unchanged index."""
    config = out / EMBEDDER_CONFIG
    if sentence_transformer is not None:
        from neat.models.st_bi_encoder import load_sentence_transformer

        _check_same_base(config, sentence_transformer)
        load_sentence_transformer(sentence_transformer, "--init")  # refused before any work
    out.mkdir(parents=True, exist_ok=True)
    pairs = pairs_from_index(db, seed=seed, negatives=negatives)
    if not pairs:
        from neat.errors import DataError

        raise DataError(
            f"the index {db} gives no training pairs (no sections with headings of two or "
            "more words, no prose sentences): index more documents with `neat index build`"
        )
    train, val = split_by_chunk(pairs, seed)
    if extra_pairs is not None:  # doc2query (neat.doc2query): generated for training chunks
        train = train + extra_pairs(train, val)
        random.Random(seed).shuffle(train)
    folder = out / "pairs"
    folder.mkdir(exist_ok=True)
    write_pairs(train, folder / "train.jsonl")
    write_pairs(val, folder / "val.jsonl")
    if not config.exists():
        recipe = default_recipe(
            Path("pairs/train.jsonl"),
            Path("pairs/val.jsonl"),
            seed=seed,
            max_steps=max_steps,
            sentence_transformer=sentence_transformer,
        )
        tmp = config.with_name(config.name + ".tmp")
        tmp.write_text(
            "# Written by `neat index train-embedder`; edit it and run the command again.\n"
            + yaml.safe_dump(recipe, sort_keys=False),
            encoding="utf-8",
        )
        tmp.replace(config)
    kinds: dict[str, int] = {}
    for pair in train:
        kinds[pair.kind] = kinds.get(pair.kind, 0) + 1
    return PreparedEmbedderRun(config, out / RUN_DIR, kinds, len(train), len(val))


def _check_same_base(config: Path, base: Path) -> None:
    """An existing config that fine-tunes another model (or trains from scratch) would be
    resumed silently instead of the model asked for: refuse it, naming both."""
    if not config.is_file():
        return
    saved = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("model", {})
    found = saved.get("sentence_transformer")
    if found is None or Path(found).resolve() != base.resolve():
        from neat.errors import ConfigError

        what = f"fine-tunes {found}" if found else "trains neat's own encoder from scratch"
        raise ConfigError(
            f"--init {base}: {config} already {what}; choose another --out, or delete "
            f"{config} to start over"
        )


def save_sentence_transformer(run_dir: Path, folder: Path) -> Path:
    """The run's newest checkpoint of a fine-tuned sentence-transformers model, saved as a
    folder of its own (written beside and renamed, so a reader never sees half of one)."""
    import shutil

    from neat.models.load import load_trained_model
    from neat.models.st_bi_encoder import SentenceTransformerBiEncoder

    model, _, _ = load_trained_model(run_dir)
    if not isinstance(model, SentenceTransformerBiEncoder):
        raise TypeError(f"{run_dir} holds no fine-tuned sentence-transformers model")
    scratch = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch)
    shutil.rmtree(folder, ignore_errors=True)
    scratch.replace(folder)
    return folder
