"""`neat data prepare|inspect|tokenizer train`: the training data of a config."""

from __future__ import annotations

import json
from pathlib import Path

import click

from neat.cli.common import config_options, load_container, user_errors


@click.group()
def data() -> None:
    """Prepare, inspect and tokenize the training data of a config."""


@data.command("prepare")
@config_options
@click.option(
    "--workers", type=click.IntRange(min=1), help="Tokenizer processes (default: all cores)."
)
@click.option(
    "--shard-tokens",
    type=click.IntRange(min=1),
    default=64 << 20,
    show_default=True,
    help="Tokens per shard file.",
)
@click.pass_context
@user_errors
def data_prepare(
    ctx: click.Context,
    config_path: Path,
    overrides: tuple[str, ...],
    workers: int | None,
    shard_tokens: int,
) -> None:
    """Tokenize the config's sources into the sharded token cache (training reuses it)."""
    import os

    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from neat.data import prepare_parts

    container = load_container(config_path, overrides, console=ctx.obj["console"])
    source, tokenizer = container.data_source(), container.tokenizer()
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=ctx.obj["console"], transient=True) as bar:
        task = bar.add_task("tokenizing", total=None)
        parts = prepare_parts(
            source,
            tokenizer,
            container.cache_dir(),
            workers=workers or os.cpu_count() or 1,
            shard_tokens=shard_tokens,
            progress=lambda done, total: bar.update(task, completed=done, total=total or None),
        )
    for prepared, weight in parts:
        state = "cached" if prepared.cached else "built"
        click.echo(
            f"{state}: {prepared.path} | {prepared.num_tokens:,} tokens in "
            f"{len(prepared.shards)} shard(s) | {prepared.documents:,} documents | "
            f"weight {weight:g}"
        )


@data.command("inspect")
@config_options
@click.option("--samples", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@user_errors
def data_inspect(
    config_path: Path, overrides: tuple[str, ...], samples: int, as_json: bool
) -> None:
    """Documents, bytes, tokens, bytes per token, shards and decoded samples of the data."""
    from neat.data import inspect_data, prepare_parts

    container = load_container(config_path, overrides)
    source, tokenizer = container.data_source(), container.tokenizer()
    parts = prepare_parts(source, tokenizer, container.cache_dir())
    report = inspect_data(source, tokenizer, parts, samples=samples)
    if as_json:
        click.echo(json.dumps(report, default=str))
        return
    for key in ("documents", "bytes", "tokens", "bytes_per_token", "shards"):
        if key in report:
            click.echo(f"{key:>16}: {report[key]}")
    for sample in report.get("samples", []):
        text = sample.get("text", sample) if isinstance(sample, dict) else sample
        click.echo(f"--- sample {sample.get('position', '') if isinstance(sample, dict) else ''}")
        click.echo(text)


@data.group()
def tokenizer() -> None:
    """Train the config's tokenizer."""


@tokenizer.command("train")
@config_options
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the trained tokenizer.json here.",
)
@click.option("--force", is_flag=True, help="Retrain even when a cached tokenizer exists.")
@user_errors
def tokenizer_train(
    config_path: Path, overrides: tuple[str, ...], output: Path | None, force: bool
) -> None:
    """Train the config's bpe (or char) tokenizer; `neat train` also does it on first use."""
    from neat.data import train_tokenizer

    container = load_container(config_path, overrides)
    trained, path = train_tokenizer(
        container.config().data.tokenizer,
        container.data_source(),
        container.cache_dir(),
        output=output,
        force=force,
    )
    click.echo(f"tokenizer: {trained.vocab_size} tokens, saved to {path}")
