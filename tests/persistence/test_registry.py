"""The run registry on real SQLite: a round trip, four processes writing at once, and a
broken registry file that costs a warning, not the run."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from structlog.testing import capture_logs

from neat.monitoring.events import EvalCompleted, RunFinished, RunStarted, TrainMetrics
from neat.monitoring.registry_monitor import RegistryMonitor, config_hash
from neat.persistence.registry import (
    RunRecord,
    list_runs,
    record_end,
    record_progress,
    record_start,
)


def _row(run_dir: str, step: int = 0) -> RunRecord:
    return RunRecord(
        run_dir=run_dir,
        name="tiny",
        started_at="2026-01-01T00:00:00.000+00:00",
        config_hash="abc",
        status="running",
        step=step,
        max_steps=50,
        num_params=10,
    )


def test_start_progress_end_round_trip_and_resume(tmp_path: Path) -> None:
    db = tmp_path / "registry.sqlite"
    record_start(db, _row("/runs/a"))
    record_progress(db, "/runs/a", 10, {"val_loss": 2.5})
    record_end(db, "/runs/a", "completed", {"val_loss": 2.0, "loss": 1.9}, step=20)
    [run] = list_runs(db)
    assert (run.status, run.step, run.metrics) == ("completed", 20, {"val_loss": 2.0, "loss": 1.9})
    assert run.ended_at is not None and run.max_steps == 50

    record_start(db, _row("/runs/a", step=20))  # resumed in the same run dir: same row
    [run] = list_runs(db)
    assert (run.status, run.ended_at, run.step) == ("running", None, 20)
    assert run.metrics == {"val_loss": 2.0, "loss": 1.9}  # kept until the next eval
    assert list_runs(tmp_path / "absent.sqlite") == []


def _write_progress(db: str, run_dir: str) -> None:
    record_start(Path(db), _row(run_dir))
    for step in range(1, 51):
        record_progress(Path(db), run_dir, step, {"val_loss": 1.0 / step})


def test_four_processes_write_at_once(tmp_path: Path) -> None:
    db = str(tmp_path / "registry.sqlite")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_progress, args=(db, f"/runs/{i}")) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    runs = {r.run_dir: r.step for r in list_runs(Path(db))}
    assert runs == {f"/runs/{i}": 50 for i in range(4)}


def _events(run: Path) -> list[object]:
    config = {"name": "tiny", "optimization": {"lr": 0.001}}
    return [
        RunStarted(run, config, 0, 10, 123, "cpu", 128),
        TrainMetrics(10, 2.1, 0.001, 1.0, None, None, 1.0),
        EvalCompleted(10, {"val_loss": 2.2}),
        RunFinished(10, "completed", 1.0, 2.2),
    ]


def test_monitor_records_a_run_beside_its_directory(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    monitor = RegistryMonitor(run)
    for event in _events(run):
        monitor.on_event(event)
    monitor.close()
    [record] = list_runs(tmp_path / "runs" / "registry.sqlite")
    assert record.run_dir == str(run.resolve()) and record.name == "tiny"
    assert record.config_hash == config_hash({"optimization": {"lr": 0.001}, "name": "tiny"})
    assert record.status == "completed" and record.num_params == 123
    assert record.metrics == {"loss": 2.1, "val_loss": 2.2, "best_val_loss": 2.2}


def test_a_corrupt_or_unwritable_registry_only_warns(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (tmp_path / "runs" / "registry.sqlite").write_bytes(b"not a database" * 100)
    blocked = tmp_path / "file"
    blocked.write_text("x")
    for monitor in (RegistryMonitor(run), RegistryMonitor(run, db=blocked / "registry.sqlite")):
        with capture_logs() as logs:
            for event in _events(run):
                monitor.on_event(event)  # raises nothing
        warnings = [line for line in logs if line["event"] == "run_registry_write_failed"]
        assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
