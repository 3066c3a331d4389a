from __future__ import annotations

from pathlib import Path

from neat.monitoring import (
    CheckpointSaved,
    EvalCompleted,
    MetricsFileMonitor,
    RunFinished,
    RunStarted,
    StepCompleted,
    TrainMetrics,
    read_metrics,
)

RUN = Path("runs/exp")


def _run_events(start: int, end: int) -> list[object]:
    return [
        RunStarted(
            run_dir=RUN,
            config={"name": "exp"},
            start_step=start,
            max_steps=end,
            num_params=1234,
            device="cpu",
            tokens_per_step=512,
        ),
        StepCompleted(step=start + 1, tokens_seen=512),
        TrainMetrics(
            step=start + 1,
            loss=2.5,
            lr=1e-3,
            tokens_per_s=1000.0,
            grad_norm=0.5,
            mfu=None,
            elapsed_s=1.5,
        ),
        EvalCompleted(step=end, metrics={"val_loss": 2.0, "val_ppl": 7.39, "val_bpb": 2.9}),
        CheckpointSaved(step=end, path=RUN / "checkpoints" / f"step_{end}"),
        RunFinished(step=end, status="completed", elapsed_s=3.0, best_val_loss=2.0),
    ]


def test_one_line_per_recorded_event_with_exact_keys(tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.jsonl"
    monitor = MetricsFileMonitor(path)
    for event in _run_events(0, 10):
        monitor.on_event(event)
    monitor.close()

    assert len(path.read_text().splitlines()) == 5  # nothing for StepCompleted
    records = read_metrics(path)
    assert [r["event"] for r in records] == ["run_start", "train", "eval", "checkpoint", "run_end"]
    start, train, evaluation, checkpoint, end = records
    assert start == {
        "event": "run_start",
        "step": 0,
        "max_steps": 10,
        "num_params": 1234,
        "device": "cpu",
        "tokens_per_step": 512,
    }
    assert train == {
        "event": "train",
        "step": 1,
        "loss": 2.5,
        "lr": 1e-3,
        "tokens_per_s": 1000.0,
        "grad_norm": 0.5,
        "mfu": None,
        "elapsed_s": 1.5,
    }
    assert evaluation == {
        "event": "eval",
        "step": 10,
        "val_loss": 2.0,
        "val_ppl": 7.39,
        "val_bpb": 2.9,
    }
    assert checkpoint == {
        "event": "checkpoint",
        "step": 10,
        "path": str(RUN / "checkpoints" / "step_10"),
    }
    assert end == {
        "event": "run_end",
        "step": 10,
        "status": "completed",
        "elapsed_s": 3.0,
        "best_val_loss": 2.0,
    }


def test_each_line_is_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    monitor = MetricsFileMonitor(path)
    monitor.on_event(CheckpointSaved(step=3, path=Path("ckpt")))

    assert read_metrics(path) == [{"event": "checkpoint", "step": 3, "path": "ckpt"}]
    monitor.close()


def test_resumed_run_appends_to_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    first = MetricsFileMonitor(path)
    for event in _run_events(0, 10):
        first.on_event(event)
    first.close()

    second = MetricsFileMonitor(path)
    for event in _run_events(10, 20):
        second.on_event(event)
    second.close()

    starts = [r["step"] for r in read_metrics(path) if r["event"] == "run_start"]
    assert starts == [0, 10]
    assert len(read_metrics(path)) == 10


def test_partial_last_line_from_a_crash_is_skipped_and_not_glued(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "checkpoint", "step": 1, "path": "a"}\n{"event": "tr')

    monitor = MetricsFileMonitor(path)
    monitor.on_event(CheckpointSaved(step=2, path=Path("b")))
    monitor.close()

    assert [r["step"] for r in read_metrics(path)] == [1, 2]


def test_building_the_monitor_touches_no_disk(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "metrics.jsonl"
    MetricsFileMonitor(path).close()
    assert not path.parent.exists()
