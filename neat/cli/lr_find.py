"""`neat lr-find`: the learning-rate range test on a config's model, in a scratch folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from neat.cli.common import config_options, user_errors

__all__ = ["lr_find"]


@click.command("lr-find")
@config_options
@click.option("--start", type=float, default=1e-7, show_default=True, help="The first rate.")
@click.option("--end", type=float, default=1.0, show_default=True, help="The last rate.")
@click.option(
    "--steps", type=click.IntRange(min=5), default=100, show_default=True, help="Rates tried."
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the loss against the rate as a PNG (needs neat[plots]).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@user_errors
def lr_find(
    ctx: click.Context,
    config_path: Path,
    overrides: tuple[str, ...],
    start: float,
    end: float,
    steps: int,
    plot_path: Path | None,
    as_json: bool,
) -> None:
    """Raise the learning rate exponentially over STEPS batches of CONFIG's training (Smith
    2017) and print the rate where the loss falls fastest. Nothing is saved: the model,
    optimizer and data are the config's, built in a scratch folder and thrown away."""
    import tempfile

    from neat.config import load_config
    from neat.di import build_container
    from neat.training import lr_find as finder

    config = load_config(config_path, list(overrides))
    if plot_path is not None:  # fail before the test, not after it
        from neat.evaluation.report.plots import matplotlib_parts

        matplotlib_parts()
    with tempfile.TemporaryDirectory(prefix="neat-lr-find-") as run_dir:
        container = build_container(config, run_dir=Path(run_dir), console=ctx.obj["console"])
        container.evaluator.override(None)
        container.checkpointer.override(None)
        result = finder.lr_find(container, start=start, end=end, steps=steps)
    configured = float(getattr(config.optimization, "lr", 0.0)) or None
    if plot_path is not None:
        finder.plot(result, plot_path, configured)
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "configured_lr": configured}, indent=2))
        return
    shown = "-" if result.suggestion is None else f"{result.suggestion:.3g}"
    click.echo(f"suggested lr: {shown} (steepest descent of the smoothed loss)")
    if result.min_loss_lr is not None:
        click.echo(f"a tenth of the rate at the lowest loss: {result.min_loss_lr:.3g}")
    if configured is not None:
        click.echo(f"the config's lr: {configured:.3g}")
    stop = f"diverged at {result.diverged_at:.3g}" if result.diverged_at else "did not diverge"
    click.echo(f"tried {len(result.lrs)} rates from {start:g}; {stop}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if plot_path is not None:
        click.echo(f"plot: {plot_path}")
