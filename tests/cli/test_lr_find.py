"""`neat lr-find` on a real tiny model: a suggestion inside the range where the loss falls,
the model and optimizer as they were, a plot, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.di import build_container
from neat.training.lr_find import centred_average, lr_find, suggest


def test_suggest_picks_the_steepest_fall_before_the_minimum() -> None:
    lrs = [10.0**e for e in range(-6, 1)]
    losses = [4.0, 3.9, 3.5, 2.5, 2.2, 2.1, 5.0]
    assert suggest(lrs, losses, skip=0) == 1e-4  # central differences: (2.5 - 3.9) / 2
    assert centred_average([1.0, 2.0, 3.0, 10.0], window=3) == [1.5, 2.0, 5.0, 6.5]


def test_the_range_test_finds_a_falling_rate_and_restores_the_model(
    tiny_config: Path, tmp_path: Path
) -> None:
    container = build_container(load_config(tiny_config), run_dir=tmp_path / "scratch")
    trainer = container.trainer()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = lr_find(container, start=1e-5, end=10.0, steps=60)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not trainer.optimizer.state  # no moment estimates left behind
    assert result.suggestion is not None
    lowest = result.lrs[result.losses.index(min(result.losses))]
    assert 1e-5 < result.suggestion < lowest
    at = result.losses[result.lrs.index(result.suggestion)]
    assert at < result.losses[0]  # the loss is falling there, not yet diverging


def test_the_command_prints_the_suggestion_and_draws_the_plot(
    tiny_config: Path, tmp_path: Path
) -> None:
    png = tmp_path / "lr.png"
    args = ["lr-find", "-c", str(tiny_config), "--steps", "30", "--end", "10", "--plot", str(png)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "suggested lr:" in result.output and "the config's lr: 0.001" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = CliRunner().invoke(cli, [*args[:5], "--json"])
    data = json.loads(result.stdout)
    assert len(data["lrs"]) == len(data["losses"]) <= 30 and data["configured_lr"] == 1e-3


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--start", "0"], "must be positive"), (["--start", "1", "--end", "0.1"], "below --end")],
)
def test_a_bad_range_is_one_clear_error(tiny_config: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["lr-find", "-c", str(tiny_config), *extra])
    assert result.exit_code == 2 and message in result.output
