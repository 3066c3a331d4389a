"""The `neat` command line: parse, load, call the library, and turn user errors into exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from neat import __version__
from neat.cli_blt import blt
from neat.cli_checkpoints import checkpoints
from neat.cli_common import config_options, user_errors
from neat.cli_index import index


def _console() -> Console:
    return Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neat")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Minimum level of log lines on the console.",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """neat trains language models from one config file.

    \b
    Start here:
      neat init my-exp                 write a commented example config
      neat train -c my-exp/neat.yaml   train; outputs go to runs/<name>-<time>/
      neat eval -c CONFIG --checkpoint runs/<run>
      neat generate --checkpoint runs/<run> --prompt "ROMEO:"
    """
    from neat.monitoring.logs import configure_logging

    console = _console()
    ctx.obj = {"console": console}
    configure_logging(console=console, level=log_level.upper())


@cli.command()
@config_options
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where outputs go (default: runs/<name>-<timestamp>/ under the current folder).",
)
@click.option(
    "--resume",
    metavar="auto|PATH",
    help="Continue from a checkpoint: 'auto' picks the newest complete one of this run "
    "(or of the newest runs/<name>-* when --run-dir is not given); PATH is a run or "
    "checkpoint directory.",
)
@click.pass_context
@user_errors
def train(
    ctx: click.Context,
    config_path: Path,
    overrides: tuple[str, ...],
    run_dir: Path | None,
    resume: str | None,
) -> None:
    """Train a model. Ctrl-C saves a checkpoint and stops; --resume auto continues."""
    from neat.config import load_config
    from neat.di import build_container
    from neat.training.resume import resolve_run

    config = load_config(config_path, overrides)
    run_dir, resume_from = resolve_run(config, run_dir, resume)
    container = build_container(
        config, run_dir=run_dir, resume_from=resume_from, console=ctx.obj["console"]
    )
    trainer = container.trainer()
    trainer.restore()
    state = trainer.fit()
    if not container.dist().is_main:  # under torchrun, rank 0 speaks for all
        return
    best = f"{state.best_val_loss:.4f}" if state.best_val_loss is not None else "n/a"
    click.echo(f"done: {state.step} steps, best val loss {best}, run dir {trainer.run_dir}")


@cli.command(name="eval")
@config_options
@click.option(
    "--checkpoint",
    "checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="A run directory (its latest complete checkpoint) or a checkpoint directory.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.pass_context
@user_errors
def evaluate(
    ctx: click.Context,
    config_path: Path,
    overrides: tuple[str, ...],
    checkpoint: Path,
    as_json: bool,
) -> None:
    """Validation loss, perplexity and bits per byte of a checkpoint."""
    from neat.config import load_config
    from neat.di.inference import evaluate_checkpoint

    config = load_config(config_path, overrides)
    metrics = evaluate_checkpoint(config, checkpoint, console=ctx.obj["console"])
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            click.echo(f"{key:>10}: {shown}")


@cli.command()
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="A run directory (its latest complete checkpoint) or a checkpoint directory.",
)
@click.option("--prompt", default="\n", show_default=True, help="Text to continue.")
@click.option("--max-new-tokens", default=200, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--temperature",
    default=0.8,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="0 means greedy decoding.",
)
@click.option("--top-k", default=None, type=click.IntRange(min=1), help="Keep the k likeliest.")
@click.option(
    "--top-p", default=None, type=click.FloatRange(0.0, 1.0), help="Nucleus sampling mass."
)
@click.option("--seed", default=1337, show_default=True, type=int, help="Same seed, same text.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | mps")
@user_errors
def generate(
    checkpoint: Path,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int,
    device: str,
) -> None:
    """Sample a continuation of PROMPT from a trained model."""
    from neat.di.inference import generate_text

    text = generate_text(
        checkpoint,
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        device=device,
    )
    click.echo(text)


@cli.group()
def config() -> None:
    """Inspect and check config files."""


@config.command("show")
@config_options
@user_errors
def config_show(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Print the fully resolved config (defaults + file + --set) as YAML."""
    from neat.config import dump_config, load_config

    click.echo(dump_config(load_config(config_path, overrides)), nl=False)


@config.command("validate")
@config_options
@user_errors
def config_validate(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Check a config file; exit 0 when valid, 2 with the problems otherwise."""
    from neat.config import load_config

    loaded = load_config(config_path, overrides)
    sources = ", ".join(source.type for source in loaded.data.sources)
    click.echo(f"{config_path}: valid (model {loaded.model.type}, data {sources})")


@cli.command()
@click.argument("directory", default=".", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing neat.yaml.")
@user_errors
def init(directory: Path, force: bool) -> None:
    """Write a commented example config, DIRECTORY/neat.yaml."""
    from neat.config.example import write_example_config

    path = write_example_config(directory, force=force)
    click.echo(f"wrote {path}; point data.path at your corpus, then: neat train -c {path}")


@cli.group()
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

    from neat.config import load_config
    from neat.data import prepare_parts
    from neat.di.builders import cache_dir_of, make_data_source, make_tokenizer

    config = load_config(config_path, overrides)
    source = make_data_source(config)
    tokenizer = make_tokenizer(config, source)
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=ctx.obj["console"], transient=True) as bar:
        task = bar.add_task("tokenizing", total=None)
        parts = prepare_parts(
            source,
            tokenizer,
            cache_dir_of(config),
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
    from neat.config import load_config
    from neat.data import inspect_data, prepare_parts
    from neat.di.builders import cache_dir_of, make_data_source, make_tokenizer

    config = load_config(config_path, overrides)
    source = make_data_source(config)
    tokenizer = make_tokenizer(config, source)
    parts = prepare_parts(source, tokenizer, cache_dir_of(config))
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
    from neat.config import load_config
    from neat.data import train_tokenizer
    from neat.di.builders import cache_dir_of, make_data_source

    config = load_config(config_path, overrides)
    trained, path = train_tokenizer(
        config.data.tokenizer,
        make_data_source(config),
        cache_dir_of(config),
        output=output,
        force=force,
    )
    click.echo(f"tokenizer: {trained.vocab_size} tokens, saved to {path}")


@cli.command()
@config_options
@click.option("--steps", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--data",
    "data_mode",
    type=click.Choice(["config", "random"]),
    default="config",
    show_default=True,
    help="random: uniform random tokens on the device (model and optimizer only).",
)
@click.option(
    "--peak-flops", type=float, default=None, help="Peak FLOP/s for MFU (default: by device)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.pass_context
@user_errors
def bench(
    ctx: click.Context,
    config_path: Path,
    overrides: tuple[str, ...],
    steps: int,
    warmup: int,
    data_mode: str,
    peak_flops: float | None,
    as_json: bool,
) -> None:
    """Steady-state step time, tokens/s, MFU and peak memory of the config's training step."""
    import tempfile

    from neat.config import load_config
    from neat.di import build_container
    from neat.training.bench import run_bench

    config = load_config(config_path, list(overrides))
    with tempfile.TemporaryDirectory(prefix="neat-bench-") as run_dir:
        container = build_container(config, run_dir=Path(run_dir), console=ctx.obj["console"])
        result = run_bench(
            container,
            steps=steps,
            warmup=warmup,
            random_data=data_mode == "random",
            peak=peak_flops,
        )
        is_main = container.dist().is_main
    if not is_main:  # under torchrun, rank 0 reports the global figures
        return
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    mfu = f"{result.mfu:.1%}" if result.mfu is not None else "n/a (unknown peak: --peak-flops)"
    memory = f"{result.peak_memory_gib:.2f} GiB" if result.peak_memory_gib is not None else "n/a"
    rows = [
        ("device", f"{result.device} ({result.precision}, compile={result.compile})"),
        ("batch x seq", f"{result.batch_size} x {result.seq_len}"),
        ("parameters", f"{result.params:,}"),
        ("warm-up", f"{result.warmup_steps} steps in {result.warmup_s:.1f} s"),
        ("step time", f"{result.step_ms:.2f} ms (mean of {result.steps})"),
        ("tokens/s", f"{result.tokens_per_s:,.0f}"),
        ("MFU", mfu),
        ("peak memory", memory),
        ("data wait", f"{result.data_wait_fraction:.1%} of step time on the host"),
    ]
    for name, value in rows:
        click.echo(f"{name:>12}  {value}")


@cli.command()
@click.argument("path", default=".", type=click.Path(path_type=Path, file_okay=False, exists=False))
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--caches", is_flag=True, help="Also remove token caches and cached tokenizers.")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The token cache to clean with --caches (default: $NEAT_CACHE_DIR or ~/.cache/neat).",
)
@click.option(
    "--runs-older-than",
    "older_than",
    type=click.FloatRange(min=0.0),
    metavar="DAYS",
    help="Also remove whole run directories (checkpoints, configs, metrics) untouched for DAYS.",
)
@user_errors
def clean(
    path: Path, dry_run: bool, caches: bool, cache_dir: Path | None, older_than: float | None
) -> None:
    """Remove leftovers under PATH: temporary files, partial checkpoints, __pycache__.

    Complete checkpoints, configs and metrics are kept unless --runs-older-than asks for
    whole runs. Symlinks are never followed out of PATH.
    """
    from neat.persistence.cleanup import apply_clean, format_bytes, plan_clean

    plan = plan_clean(path, caches=caches, cache_dir=cache_dir, runs_older_than_days=older_than)
    verb = "would remove" if dry_run else "removed"
    for removal in plan.removals:
        click.echo(f"{verb} {removal.path} ({format_bytes(removal.bytes)}, {removal.reason})")
    freed = plan.total_bytes if dry_run else apply_clean(plan)
    summary = "would free" if dry_run else "freed"
    click.echo(f"{len(plan.removals)} item(s); {summary} {format_bytes(freed)}")


cli.add_command(index)
cli.add_command(blt)
cli.add_command(checkpoints)


def main() -> None:
    cli(prog_name="neat")


if __name__ == "__main__":
    main()
