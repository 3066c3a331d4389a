"""`neat train` and `neat bench`: run the config's training loop, or time its step."""

from __future__ import annotations

import json
from pathlib import Path

import click

from neat.cli.common import config_options, user_errors


@click.command()
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
    from neat.interfaces import ITrainer
    from neat.training.resume import resolve_run

    config = load_config(config_path, overrides)
    run_dir, resume_from = resolve_run(config, run_dir, resume)
    container = build_container(
        config, run_dir=run_dir, resume_from=resume_from, console=ctx.obj["console"]
    )
    trainer: ITrainer = container.trainer()
    trainer.restore()
    state = trainer.fit()
    if not container.dist().is_main:  # under torchrun, rank 0 speaks for all
        return
    best = f"{state.best_val_loss:.4f}" if state.best_val_loss is not None else "n/a"
    click.echo(f"done: {state.step} steps, best val loss {best}, run dir {container.run_dir()}")


@click.command()
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
