from __future__ import annotations

import subprocess
import sys
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


def _start(step: int) -> RunStarted:
    return RunStarted(
        run_dir=RUN,
        config={},
        start_step=step,
        max_steps=30,
        num_params=1,
        device="cpu",
        tokens_per_step=8,
    )


def _train(step: int, loss: float = 1.0) -> TrainMetrics:
    return TrainMetrics(
        step=step, loss=loss, lr=1e-3, tokens_per_s=1.0, grad_norm=None, mfu=None, elapsed_s=1.0
    )


def _segment(path: Path, start: int, crash_at: int, checkpoints: tuple[int, ...]) -> None:
    """A run segment that logs every step, checkpoints at `checkpoints` and dies at `crash_at`
    (no run_end), as after kill -9."""
    monitor = MetricsFileMonitor(path)
    monitor.on_event(_start(start))
    for step in range(start + 1, crash_at + 1):
        monitor.on_event(_train(step, loss=float(start)))
        if step in checkpoints:
            monitor.on_event(CheckpointSaved(step=step, path=RUN / f"step_{step}"))
    monitor.close()


def test_resuming_moves_the_rows_an_abandoned_segment_wrote_after_the_checkpoint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metrics.jsonl"
    _segment(path, 0, 25, checkpoints=(10, 20))  # crashed at 25: steps 21..25 are replayed
    _segment(path, 20, 23, checkpoints=())  # crashed again before a checkpoint
    _segment(path, 20, 30, checkpoints=(30,))

    records = read_metrics(path)
    keys = [(r["event"], r["step"]) for r in records]
    assert len(keys) == len(set(keys))  # one row per step and event
    assert [r["step"] for r in records if r["event"] == "train"] == list(range(1, 31))
    assert [r["step"] for r in records if r["event"] == "run_start"] == [0, 20]
    losses = {r["step"]: r["loss"] for r in records if r["event"] == "train"}
    assert losses[20] == 0.0 and losses[21] == 20.0  # the replayed steps are the new ones
    replaced = read_metrics(tmp_path / "metrics.replaced.jsonl")
    assert [(r["event"], r["step"]) for r in replaced] == [
        *[("train", s) for s in range(21, 26)],
        ("run_start", 20),
        *[("train", s) for s in range(21, 24)],
    ]


def test_interrupted_segment_keeps_its_end_and_a_fresh_start_replaces_everything(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metrics.jsonl"
    first = MetricsFileMonitor(path)
    for event in _run_events(0, 10)[:-1]:
        first.on_event(event)
    first.on_event(RunFinished(step=10, status="interrupted", elapsed_s=1.0, best_val_loss=None))
    first.close()
    second = MetricsFileMonitor(path)
    second.on_event(_start(10))
    second.close()
    assert [r["event"] for r in read_metrics(path)][-3:] == ["checkpoint", "run_end", "run_start"]

    # no checkpoint survived (a run dir started again from step 0): nothing is history
    other = tmp_path / "fresh.jsonl"
    _segment(other, 0, 5, checkpoints=())
    _segment(other, 0, 3, checkpoints=())
    assert [(r["event"], r["step"]) for r in read_metrics(other)] == [
        ("run_start", 0),
        ("train", 1),
        ("train", 2),
        ("train", 3),
    ]


FULL_DISK_DRIVER = """
import resource, signal, sys
from pathlib import Path
from neat.errors import DiskFullError
from neat.monitoring import CheckpointSaved, MetricsFileMonitor, TrainMetrics

path, limit = Path(sys.argv[1]), int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
monitor = MetricsFileMonitor(path)
event = TrainMetrics(step=7, loss=1.0, lr=1.0, tokens_per_s=1.0, grad_norm=None, mfu=None,
                     elapsed_s=1.0)
try:
    monitor.on_event(event)
except DiskFullError as exc:
    print("refused:", exc)
monitor.on_event(CheckpointSaved(step=8, path=Path("x")))  # the run is ending: ignored
monitor.close()
"""


def test_full_disk_is_one_clear_error_and_leaves_no_half_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    row = '{"event": "checkpoint", "step": 5, "path": "a"}\n'
    path.write_text(row * 20)
    size = path.stat().st_size
    driver = tmp_path / "driver.py"
    driver.write_text(FULL_DISK_DRIVER)

    done = subprocess.run(
        [sys.executable, str(driver), str(path), str(size + 40)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"refused: cannot write {path}: File too large")
    assert "--resume auto" in done.stdout and "Traceback" not in done.stderr
    assert path.stat().st_size == size  # the cut line was taken back
    assert len(read_metrics(path)) == 20
