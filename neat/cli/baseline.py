"""`neat baseline`: the plain GPT with a model's parameter count, data and budget, to compare
a new architecture against at equal size."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import click

from neat.cli.common import config_options, user_errors
from neat.errors import ConfigError

__all__ = ["baseline"]


@click.command()
@config_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the baseline's config here as YAML (neat train -c OUT trains it).",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0.0),
    default=0.02,
    show_default=True,
    help="Largest relative difference in parameters the baseline may have.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@user_errors
def baseline(
    config_path: Path,
    overrides: Sequence[str],
    out: Path | None,
    force: bool,
    tolerance: float,
    as_json: bool,
) -> None:
    """A plain GPT matched in parameters to CONFIG's model (same context, data, budget)."""
    from neat.config import load_config
    from neat.config.loader import dump_config
    from neat.models.baseline import matched_baseline

    if out is not None and out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    config = load_config(config_path, list(overrides))
    result, match = matched_baseline(config, tolerance=tolerance)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dump_config(result), encoding="utf-8")
    figures = {**dataclasses.asdict(match), "out": str(out) if out else None}
    if as_json:
        click.echo(json.dumps(figures))
        return
    click.echo(
        f"target   {match.target_params:,} parameters ({config.model.type})\n"
        f"baseline {match.baseline_params:,} parameters (gpt: n_layer {match.n_layer}, "
        f"n_head {match.n_head}, n_embd {match.n_embd})\n"
        f"diff     {match.relative_diff:+.2%}"
    )
    if out is not None:
        click.echo(f"wrote {out}; train it with: neat train -c {out}")
