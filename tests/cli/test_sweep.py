"""`neat sweep`: grid, random and Bayesian search, each trial a real neat run; a killed sweep
resumes; a bad space file is one clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from neat.cli import cli
from neat.config.sweep import IntRange, grid_values

pytest.importorskip("optuna")

SHORT = ["training.max_steps=6", "evaluation.interval=3", "checkpoint.interval=3",
         "evaluation.batches=1", "monitoring.log_interval=3"]  # fmt: skip


def sweep(config: Path, space: dict[str, object], out: Path, *args: str) -> tuple[int, str, str]:
    path = out.parent / f"{out.name}-space.yaml"
    path.write_text(yaml.safe_dump(space), encoding="utf-8")
    sets = [item for s in SHORT for item in ("--set", s)]
    result = CliRunner().invoke(
        cli, ["sweep", "-c", str(config), "--space", str(path), "--out", str(out), *sets, *args]
    )
    return result.exit_code, result.stdout, result.stderr


def trials(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def test_grid_search_covers_the_grid_exactly(tiny_config: Path, tmp_path: Path) -> None:
    space = {
        "optimization.lr": {"type": "choice", "values": [1.0e-3, 3.0e-3]},
        "optimization.warmup_steps": {"type": "int", "low": 0, "high": 2, "step": 2},
    }
    out = tmp_path / "grid"
    code, stdout, err = sweep(tiny_config, space, out, "--strategy", "grid")
    assert code == 0, err
    seen = sorted(
        (t["params"]["optimization.lr"], t["params"]["optimization.warmup_steps"])
        for t in trials(out)
    )
    assert seen == [(1.0e-3, 0), (1.0e-3, 2), (3.0e-3, 0), (3.0e-3, 2)]
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["optimization"]["lr"] in (1.0e-3, 3.0e-3) and "best: trial" in stdout
    # the sweep's report: the score per trial, by each key, the trials' curves, the table
    plots = {p.name.split("-", 2)[-1] for p in (out / "report_plots").glob("*.png")}
    assert plots == {
        "trials.png",
        "by_optimization_lr.png",
        "by_optimization_warmup_steps.png",
        "compare_train_loss.png",
        "compare_val_loss.png",
    }
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<img src='data:image/png;base64,") == 5
    assert "4 of 4 done" in page and page.count("<td>complete</td>") == 4


def test_random_and_bayes_run_n_distinct_trials_and_resume(
    tiny_config: Path, tmp_path: Path
) -> None:
    space = {"optimization.lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}
    for strategy in ("random", "bayes"):
        out = tmp_path / strategy
        code, _, err = sweep(tiny_config, space, out, "--strategy", strategy, "--trials", "2")
        assert code == 0, err
        code, _, err = sweep(tiny_config, space, out, "--strategy", strategy, "--trials", "3")
        assert code == 0, err
        rows = trials(out)
        assert [r["state"] for r in rows] == ["complete"] * 3
        assert len({r["params"]["optimization.lr"] for r in rows}) == 3  # no trial repeated


def test_a_sweep_killed_mid_trial_resumes_and_finishes(tiny_config: Path, tmp_path: Path) -> None:
    space = {"optimization.lr": {"type": "choice", "values": [1.0e-3, 2.0e-3]}}
    out = tmp_path / "killed"
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    long = ["training.max_steps=40", "evaluation.interval=20", "checkpoint.interval=5",
            "evaluation.batches=1"]  # fmt: skip
    args = ["-m", "neat", "sweep", "-c", str(tiny_config), "--space", str(space_file),
            "--strategy", "grid", "--out", str(out)]  # fmt: skip
    args += [item for s in long for item in ("--set", s)]
    child = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    try:
        while not list(out.glob("trials/*/checkpoints/step_5")):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    rows = trials(out)
    complete = [r for r in rows if r["state"] == "complete"]
    assert sorted(r["params"]["optimization.lr"] for r in complete) == [1.0e-3, 2.0e-3]
    resumed = [json.loads(line) for path in out.glob("trials/*/metrics.jsonl")
               for line in path.read_text().splitlines() if '"run_start"' in line]  # fmt: skip
    assert any(row["step"] >= 5 for row in resumed)  # the killed trial continued its checkpoint


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"optimization.lrr": {"type": "choice", "values": [1]}}, "optimization.lrr: unknown key"),
        ({"optimization.lr": {"type": "uniform", "low": 1, "high": 0}}, "empty range"),
        ({"optimization.lr": {"type": "choice", "values": []}}, "optimization.lr"),
        ({"optimization.lr": {"type": "loguniform", "low": "a", "high": 1}}, "optimization.lr"),
        ([1, 2], "must map config keys to ranges"),
    ],
)
def test_a_bad_space_is_one_clear_error(
    tiny_config: Path, tmp_path: Path, space: object, message: str
) -> None:
    code, _, err = sweep(tiny_config, space, tmp_path / "bad", "--trials", "1")  # type: ignore[arg-type]
    assert code == 2 and message in err
    assert not (tmp_path / "bad").exists()


def test_grid_needs_points_for_a_float_range() -> None:
    assert grid_values("k", IntRange(type="int", low=1, high=7, step=3)) == [1, 4, 7]
    code_free = pytest.raises(Exception, match="add points: N")
    from neat.config.sweep import FloatRange

    with code_free:
        grid_values("k", FloatRange(type="uniform", low=0.0, high=1.0))
    log = grid_values("k", FloatRange(type="loguniform", low=1e-4, high=1e-2, points=3))
    assert log == pytest.approx([1e-4, 1e-3, 1e-2])
