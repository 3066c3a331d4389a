"""`neat ablate`: which components of the unified model earn their place, over seeds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from neat.cli.common import config_options, user_errors
from neat.errors import ConfigError

__all__ = ["ablate"]


def _seeds(text: str) -> list[int]:
    """``3`` (seeds 0, 1, 2) or ``0,4,7``."""
    try:
        if "," in text:
            return [int(part) for part in text.split(",")]
        count = int(text)
    except ValueError:
        count = 0
    if count < 1 and "," not in text:
        raise ConfigError(f"--seeds {text!r}: give a count (3) or a list (0,4,7)")
    return list(range(count))


@click.command()
@config_options
@click.option(
    "--components",
    required=True,
    help="Comma-separated components to turn on and off: blt, titans, svf, mvot.",
)
@click.option(
    "--mode",
    type=click.Choice(["leave-one-out", "one-at-a-time", "all"]),
    default="leave-one-out",
    show_default=True,
    help="leave-one-out: all on, then each off; one-at-a-time: none, then each alone; all: "
    "every subset.",
)
@click.option("--seeds", default="3", show_default=True, help="A count (3) or a list (0,4,7).")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("runs/ablation"),
    show_default=True,
    help="Run directories, ablation.jsonl and the tables; rerun with it to resume.",
)
@click.option("--baseline/--no-baseline", default=True, help="Add the parameter-matched GPT.")
@click.option(
    "--svf-steps", type=click.IntRange(min=1), default=None, help="SVF steps (default: max_steps)."
)
@click.option("--svf-lr", type=float, default=1e-2, show_default=True, help="SVF learning rate.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--dry-run", is_flag=True, help="List the runs and their parameters; train none.")
@user_errors
def ablate(
    config_path: Path,
    overrides: Sequence[str],
    components: str,
    mode: str,
    seeds: str,
    out: Path,
    baseline: bool,
    svf_steps: int | None,
    svf_lr: float,
    jobs: int,
    dry_run: bool,
) -> None:
    """Train every variant of CONFIG's unified model (and its matched baseline) per seed;
    evaluate each and tabulate mean, std, 95% intervals and paired differences."""
    from neat.config import load_config
    from neat.evaluation.ablation_table import markdown, summary
    from neat.files import write_text_atomic
    from neat.training.ablation import plan, result_row, run_all

    config = load_config(config_path, list(overrides))
    names = [name.strip() for name in components.split(",") if name.strip()]
    runs = plan(
        config,
        names,
        mode,  # type: ignore[arg-type]  # a click choice
        _seeds(seeds),
        baseline=baseline,
        svf_steps=svf_steps,
        svf_lr=svf_lr,
    )
    if dry_run:
        for run in runs:
            role = run.variant or "(base of an svf run)"
            after = f", from {run.after}" if run.after else ""
            steps = run.config["training"]["max_steps"]
            click.echo(f"{run.key:28} {role:24} {run.params:>12,} params, {steps} steps{after}")
        click.echo(f"{len(runs)} runs")
        return
    out.mkdir(parents=True, exist_ok=True)
    run_all(runs, out, jobs=jobs, say=lambda line: click.echo(line, err=True))
    rows = [result_row(run, out) for run in runs if run.variant is not None]
    write_text_atomic(out / "ablation.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    table = summary(rows, "baseline" if baseline else None)
    write_text_atomic(out / "summary.json", json.dumps(table, indent=2) + "\n")
    text = markdown(table)
    write_text_atomic(out / "summary.md", text)
    click.echo(text)
