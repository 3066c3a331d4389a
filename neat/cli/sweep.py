"""`neat sweep`: grid, random or Bayesian search over config keys, each trial a neat run."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import click

from neat.cli.common import config_options, user_errors

__all__ = ["sweep"]


@click.command()
@config_options
@click.option(
    "--space",
    "space_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML: config keys to ranges, e.g. optimization.lr: {type: loguniform, low: 1e-4, "
    "high: 1e-2}; types uniform, loguniform, int, choice.",
)
@click.option(
    "--strategy",
    type=click.Choice(["grid", "random", "bayes"]),
    default="bayes",
    show_default=True,
    help="bayes: Optuna's TPE.",
)
@click.option(
    "--trials", type=click.IntRange(min=1), default=None, help="Default: the grid's size (grid)."
)
@click.option("--metric", default="val_loss", show_default=True, help="An evaluation metric.")
@click.option(
    "--direction",
    type=click.Choice(["minimize", "maximize"]),
    default="minimize",
    show_default=True,
)
@click.option("--prune", is_flag=True, help="Stop trials behind the median at an evaluation.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Trials, the study (SQLite) and best.yaml; default runs/sweep-<name>. Rerun to resume.",
)
@user_errors
def sweep(
    config_path: Path,
    overrides: Sequence[str],
    space_path: Path,
    strategy: str,
    trials: int | None,
    metric: str,
    direction: str,
    prune: bool,
    seed: int,
    out: Path | None,
) -> None:
    """Search CONFIG's keys over SPACE; write the best config as YAML."""
    import math

    from neat.config import load_config
    from neat.config.loader import dump_config
    from neat.config.sweep import grid_values, load_space
    from neat.errors import ConfigError
    from neat.files import write_text_atomic
    from neat.training.sweep import run_sweep

    config = load_config(config_path, list(overrides))

    def check_key(key: str, value: object) -> None:
        load_config(config_path, [*overrides, f"{key}={json.dumps(value)}"])

    space = load_space(space_path, check_key)
    if trials is None:
        if strategy != "grid":
            raise ConfigError(f"--strategy {strategy} needs --trials N")
        trials = math.prod(len(grid_values(k, p)) for k, p in space.items())
    out = out or Path("runs") / f"sweep-{config.name}"
    result = run_sweep(
        config_path,
        overrides,
        space,
        out,
        strategy=strategy,  # type: ignore[arg-type]  # click choices
        trials=trials,
        metric=metric,
        direction=direction,  # type: ignore[arg-type]
        prune=prune,
        seed=seed,
        say=lambda line: click.echo(line, err=True),
    )
    click.echo(f"| trial | {' | '.join(space)} | {metric} | state |")
    click.echo("|---" * (len(space) + 3) + "|")
    for row in result.trials:
        values = " | ".join(
            f"{row['params'].get(k, '-'):.4g}"
            if isinstance(row["params"].get(k), float)
            else str(row["params"].get(k, "-"))
            for k in space
        )
        value = "-" if row["value"] is None else f"{row['value']:.4f}"
        click.echo(f"| {row['number']} | {values} | {value} | {row['state']} |")
    if result.best is None:
        raise ConfigError(f"no trial of {out} completed; see its logs/")
    best_sets = [f"{k}={json.dumps(v)}" for k, v in result.best["params"].items()]
    best = load_config(config_path, [*overrides, *best_sets])
    write_text_atomic(out / "best.yaml", dump_config(best))
    click.echo(
        f"best: trial {result.best['number']}, {metric} {result.best['value']:.4f} "
        f"({', '.join(best_sets)}); config in {out / 'best.yaml'}"
    )
    if importlib.util.find_spec("matplotlib") is not None:
        from neat.evaluation.report import build_report

        click.echo(f"report: {build_report([out], out / 'report.html').html}")
