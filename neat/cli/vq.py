"""`neat vq ...`: look at what a trained image tokenizer (`model.type: vq`) keeps of a state."""

from __future__ import annotations

import json
from pathlib import Path

import click

from neat.cli.common import user_errors
from neat.errors import ConfigError

__all__ = ["vq"]


@click.group()
def vq() -> None:
    """Image tokenizer tools: a VQ-VAE trained on rendered grid worlds (examples/vq_grid.yaml)."""


@vq.command("reconstruct")
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="Run or checkpoint of a vq model (neat train -c examples/vq_grid.yaml).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="PNG to write: originals on top, reconstructions below, wrong cells outlined.",
)
@click.option(
    "--split",
    type=click.Choice(["test_id", "test_heldout", "test_ood", "train"]),
    default="test_ood",
    show_default=True,
    help="Whose problems' states to show (test_ood: the larger grids of data.test.size).",
)
@click.option("-n", "--num", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@user_errors
def reconstruct(checkpoint: Path, out: Path, split: str, num: int, as_json: bool) -> None:
    """Encode the states of `--num` problems to codes and decode them back; write the sheet."""
    from neat.data.grid_world import problems, save_png
    from neat.data.grid_world.render import CELL
    from neat.data.grid_world.spec import GridWorldSourceConfig
    from neat.evaluation.vq_reconstruction import comparison_sheet, state_images
    from neat.models.load import load_trained_model
    from neat.models.vq import VQVAE

    model, _, config = load_trained_model(checkpoint)
    if not isinstance(model, VQVAE):
        raise ConfigError(
            f"{checkpoint} holds a {config.model.type} model, not an image tokenizer: pass a "
            "run of model.type: vq (neat train -c examples/vq_grid.yaml)"
        )
    sources = [s for s in config.data.sources if isinstance(s, GridWorldSourceConfig)]
    if not sources:
        raise ConfigError(f"{checkpoint}'s config has no grid_world source to draw states from")
    model.eval()
    states = state_images(problems(sources[0], split, num))  # type: ignore[arg-type]  # a click choice
    sheet, right, total = comparison_sheet(model, states, CELL)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(sheet, out)
    figures = {"images": len(states), "cells": total, "cell_acc": right / total, "out": str(out)}
    if as_json:
        click.echo(json.dumps(figures))
    else:
        click.echo(
            f"{len(states)} states of {num} {split} problems: {right}/{total} cells "
            f"({right / total:.2%}) decode to the right tile; wrote {out}"
        )
