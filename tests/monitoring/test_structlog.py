from __future__ import annotations

from pathlib import Path

import structlog

from neat.monitoring import (
    CheckpointSaved,
    EvalCompleted,
    RunFinished,
    RunStarted,
    StepCompleted,
    StructlogMonitor,
    TrainMetrics,
)


def test_logs_every_event_but_steps_with_its_fields() -> None:
    monitor = StructlogMonitor()
    events: list[object] = [
        RunStarted(
            run_dir=Path("runs/x"),
            config={"big": "config"},
            start_step=0,
            max_steps=10,
            num_params=99,
            device="cpu",
            tokens_per_step=64,
        ),
        StepCompleted(step=1, tokens_seen=64),
        TrainMetrics(
            step=1, loss=2.0, lr=1e-3, tokens_per_s=5.0, grad_norm=0.1, mfu=None, elapsed_s=0.5
        ),
        EvalCompleted(step=1, metrics={"val_loss": 1.5}),
        CheckpointSaved(step=1, path=Path("runs/x/checkpoints/step_1")),
        RunFinished(step=1, status="failed", elapsed_s=0.7, best_val_loss=1.5),
    ]
    with structlog.testing.capture_logs() as logs:
        for event in events:
            monitor.on_event(event)
    monitor.close()

    assert [entry["event"] for entry in logs] == [
        "run_start",
        "train",
        "eval",
        "checkpoint",
        "run_end",
    ]
    start, train, evaluation, checkpoint, end = logs
    assert "config" not in start
    assert start["run_dir"] == str(Path("runs/x"))
    assert (start["step"], start["max_steps"], start["device"]) == (0, 10, "cpu")
    assert train == {
        "event": "train",
        "log_level": "info",
        "step": 1,
        "loss": 2.0,
        "lr": 1e-3,
        "tokens_per_s": 5.0,
        "grad_norm": 0.1,
        "mfu": None,
        "elapsed_s": 0.5,
    }
    assert (evaluation["step"], evaluation["val_loss"]) == (1, 1.5)
    assert checkpoint["path"] == str(Path("runs/x/checkpoints/step_1"))
    assert end["log_level"] == "error"  # a failed run stands out
    assert (end["status"], end["best_val_loss"]) == ("failed", 1.5)
