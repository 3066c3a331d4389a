"""`neat runs list|compare` over two tiny real runs of different learning rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def two_runs(tiny_config: Path, tmp_path: Path) -> tuple[Path, Path]:
    runs = tmp_path / "runs"
    for name, lr in (("a", "1.0e-3"), ("b", "3.0e-3")):
        code, _, err = invoke(
            "train",
            "-c",
            str(tiny_config),
            "--run-dir",
            str(runs / name),
            "--set",
            "training.max_steps=10",
            "--set",
            f"optimization.lr={lr}",
        )
        assert code == 0, err
    return runs / "a", runs / "b"


def test_list_and_compare_two_real_runs(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    runs_dir = a.parent
    assert sorted(p.name for p in a.iterdir() if "registry" in p.name) == []  # beside, not in

    code, out, err = invoke("runs", "list", "--runs-dir", str(runs_dir), "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [r["run_dir"] for r in listed] == [str(b.resolve()), str(a.resolve())]  # newest first
    for record in listed:
        assert record["status"] == "completed" and record["step"] == record["max_steps"] == 10
        assert len(record["config_hash"]) == 64 and record["name"] == "tiny"
        assert {"val_loss", "loss", "best_val_loss"} <= set(record["metrics"])
    assert listed[0]["config_hash"] != listed[1]["config_hash"]

    code, out, err = invoke("runs", "list", "--runs-dir", str(runs_dir))
    assert code == 0, err
    assert "completed" in out and "10/10" in out

    code, out, err = invoke("runs", "compare", str(a), str(b))
    assert code == 0, err
    assert "optimization.lr" in out and "0.001" in out and "0.003" in out
    assert "val_loss" in out

    code, out, _ = invoke("runs", "compare", str(a), str(b), "--json")
    compared = json.loads(out)
    assert compared["config_diff"] == [{"key": "optimization.lr", "a": 0.001, "b": 0.003}]
    val = next(row for row in compared["metrics"] if row["metric"] == "val_loss")
    assert val["diff"] == pytest.approx(val["b"] - val["a"])
    assert val["a"] == listed[1]["metrics"]["val_loss"]


def test_list_without_a_registry_is_empty(tmp_path: Path) -> None:
    code, out, err = invoke("runs", "list", "--runs-dir", str(tmp_path), "--json")
    assert (code, json.loads(out)) == (0, [])
    assert "no run registry" in err


def test_compare_refuses_a_folder_that_is_no_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    code, _, err = invoke("runs", "compare", str(run), str(tmp_path / "nowhere"))
    assert code == 2
    assert "is not a run directory" in err and err.count("Error:") == 1


def test_a_run_whose_process_died_is_listed_unfinished(tmp_path: Path) -> None:
    from neat.files import FileLock
    from neat.persistence.registry import RunRecord, record_start, registry_path

    runs_dir = tmp_path / "runs"
    alive, dead = runs_dir / "alive", runs_dir / "dead"
    for run in (alive, dead):
        run.mkdir(parents=True)
        row = RunRecord(run_dir=str(run), name=run.name, started_at="2026-12-03T00:00:00",
                        config_hash="0" * 64, status="running", step=3, max_steps=10,
                        num_params=1)  # fmt: skip
        record_start(registry_path(run), row)
    lock = FileLock(alive / ".lock")
    lock.acquire()  # a live trainer holds its run directory's lock; the dead one's went with it
    try:
        code, out, err = invoke("runs", "list", "--runs-dir", str(runs_dir), "--json")
    finally:
        lock.release()
    assert code == 0, err
    assert {r["name"]: r["status"] for r in json.loads(out)} == {
        "alive": "running",
        "dead": "unfinished",
    }
