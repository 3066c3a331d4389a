"""`neat quick-test`: a few real steps of a tiny config in a scratch folder, then a report."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.cli.quick_test import quick_overrides
from neat.config import load_config


@pytest.fixture
def scratch_area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's folder for this test, so what the quick test leaves there can be seen."""
    area = tmp_path / "tmp"
    area.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(area))
    return area


def _ours(area: Path) -> list[Path]:
    """The quick test's folders (torch keeps its own caches in the temp area too)."""
    return [p for p in area.iterdir() if p.name.startswith("neat-quick-test-")]


def test_quick_test_trains_reports_and_leaves_nothing(
    tiny_config: Path, tmp_path: Path, scratch_area: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    result = CliRunner().invoke(cli, ["quick-test", "-c", "tiny.yaml"], prog_name="neat")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("OK: quick test of tiny.yaml")
    assert "steps       5/5" in out
    assert "(step 1) ->" in out and "(step 5)" in out  # the first and the last loss
    assert "val_loss=" in out and "val_ppl=" in out
    assert "checkpoint  saved at step 5" in out
    assert "parameters  27,360" in out
    assert "seconds" in out
    assert str(scratch_area) in result.stderr  # it trained in the scratch area ...
    assert _ours(scratch_area) == []  # ... and deleted its folder
    assert set(tmp_path.iterdir()) == before  # no runs/ (or anything else) in the cwd


def test_a_typo_key_is_one_error_and_exit_2(tiny_config: Path, scratch_area: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["quick-test", "-c", str(tiny_config), "--set", "training.max_stepz=3"],
        prog_name="neat",
    )
    assert result.exit_code == 2
    assert "training.max_stepz" in result.stderr
    assert "Traceback" not in result.output
    assert _ours(scratch_area) == []


def test_overrides_shrink_only_the_evaluators_own_knobs(tiny_config: Path) -> None:
    config = load_config(tiny_config)  # evaluation: lm with batches: 2
    assert quick_overrides(config, 3) == [
        "training.max_steps=3",
        "evaluation.interval=3",
        "checkpoint.interval=3",
        "monitoring.log_interval=1",
        "evaluation.batches=2",
    ]
    fewer = load_config(tiny_config, ["evaluation.batches=1"])
    assert quick_overrides(fewer, 5)[-1] == "evaluation.batches=1"  # never raised
    assert not any("num_problems" in o for o in quick_overrides(config, 5))
