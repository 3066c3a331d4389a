"""`neat index train-embedder`: pairs from the index, then an ordinary neat training run."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from neat.cli.common import db_option, user_errors


@click.command("train-embedder")
@db_option
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="An experiment config whose indexing.db names the index.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the pairs, embedder.yaml and the run go (default: embedder/ beside the index).",
)
@click.option(
    "--steps",
    default=300,
    show_default=True,
    type=click.IntRange(min=1),
    help="training.max_steps of a new embedder.yaml.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Pairs and training seed.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of embedder.yaml for this run (e.g. training.device=cuda).",
)
@click.option(
    "--init",
    "sentence_transformer",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Fine-tune this local sentence-transformers folder instead of training neat's own "
    "encoder from scratch; the result is also saved as one under OUT/sentence-transformer.",
)
@click.option(
    "--doc2query",
    is_flag=True,
    help="Also train a small LM on the heading pairs and add a query it writes for every "
    "training chunk (doc2query); the LM's run is kept under OUT/doc2query.",
)
@click.option("--resume", metavar="auto|PATH", help="Continue the run (auto: OUT/run's newest).")
@click.pass_context
@user_errors
def train_embedder(
    ctx: click.Context,
    db: Path | None,
    config_path: Path | None,
    out: Path | None,
    steps: int,
    seed: int,
    overrides: tuple[str, ...],
    sentence_transformer: Path | None,
    doc2query: bool,
    resume: str | None,
) -> None:
    """Train a retriever on the indexed documents alone (no labels, no download); then set
    indexing.embedder: {type: neat, path: OUT} and rebuild the index."""
    from neat.config import load_config
    from neat.config.indexing import IndexingConfig
    from neat.di import build_container
    from neat.doc2query import generated_pairs
    from neat.errors import ConfigError
    from neat.indexing.train_embedder import (
        SENTENCE_TRANSFORMER_DIR,
        prepare_embedder_run,
        save_sentence_transformer,
    )
    from neat.training.resume import resolve_run

    indexing = load_config(config_path).indexing if config_path else IndexingConfig()
    db = Path(db or indexing.db)
    if not db.is_file():
        raise ConfigError(
            f"no index at {db}: build one with `neat index build PATH` (or pass --db FILE)"
        )
    out = out or db.parent / "embedder"
    prepared = prepare_embedder_run(
        db,
        out,
        seed=seed,
        max_steps=steps,
        sentence_transformer=sentence_transformer,
        extra_pairs=partial(
            generated_pairs, db, work=out / "doc2query", seed=seed, console=ctx.obj["console"]
        )
        if doc2query
        else None,
    )
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(prepared.pairs.items()))
    click.echo(
        f"pairs: {prepared.train_pairs} for training ({kinds}), {prepared.val_pairs} held out; "
        f"config {prepared.config}"
    )
    config = load_config(prepared.config, overrides)
    run_dir, resume_from = resolve_run(config, prepared.run_dir, resume)
    container = build_container(
        config, run_dir=run_dir, resume_from=resume_from, console=ctx.obj["console"]
    )
    trainer = container.trainer()
    trainer.restore()
    state = trainer.fit()
    shown = ", ".join(
        f"{k} {v:.3f}" for k, v in state.metrics.items() if k.startswith(("recall", "mrr"))
    )
    click.echo(f"done: {state.step} steps, held-out {shown or 'not evaluated'}")
    if config.model.type == "bi_encoder" and getattr(config.model, "sentence_transformer", None):
        saved = save_sentence_transformer(run_dir, out / SENTENCE_TRANSFORMER_DIR)
        click.echo(f"the fine-tuned model as a sentence-transformers folder: {saved}")
    click.echo(f"use it: indexing.embedder: {{type: neat, path: {out}}}, then `neat index build`")
