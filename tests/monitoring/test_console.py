from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from neat.errors import ConfigError
from neat.monitoring import (
    CheckpointSaved,
    ConsoleMonitor,
    EvalCompleted,
    RunFinished,
    RunStarted,
    StepCompleted,
    TrainMetrics,
)
from neat.monitoring.console import format_duration, format_rate

RUN = Path("runs/exp")


def _events() -> list[object]:
    events: list[object] = [
        RunStarted(
            run_dir=RUN,
            config={},
            start_step=0,
            max_steps=2000,
            num_params=1_234_567,
            device="cpu",
            tokens_per_step=16384,
        )
    ]
    events += [StepCompleted(step=s, tokens_seen=s * 16384) for s in range(1, 101)]
    # 100 steps in the first 10 s (includes warm-up), then 100 steps in 8 s.
    events.append(
        TrainMetrics(
            step=100,
            loss=2.45123,
            lr=9.9e-4,
            tokens_per_s=12345.0,
            grad_norm=None,
            mfu=0.312,
            elapsed_s=10.0,
        )
    )
    events += [StepCompleted(step=s, tokens_seen=s * 16384) for s in range(101, 201)]
    events.append(
        TrainMetrics(
            step=200,
            loss=2.3,
            lr=9.8e-4,
            tokens_per_s=12500.0,
            grad_norm=0.9123,
            mfu=None,
            elapsed_s=18.0,
        )
    )
    events.append(
        EvalCompleted(step=250, metrics={"val_loss": 1.98764, "val_ppl": 7.2987, "val_bpb": 2.8681})
    )
    events.append(CheckpointSaved(step=250, path=RUN / "checkpoints" / "step_250"))
    events.append(RunFinished(step=2000, status="completed", elapsed_s=245.0, best_val_loss=1.9876))
    return events


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120), buffer


def _plain(buffer: io.StringIO) -> str:
    """Terminal output without colour and cursor codes."""
    return Text.from_ansi(buffer.getvalue()).plain


def test_plain_mode_prints_one_line_per_interval_eval_checkpoint_and_run() -> None:
    console, buffer = _console(terminal=False)
    monitor = ConsoleMonitor(console, mode="plain")
    for event in _events():
        monitor.on_event(event)
    monitor.close()

    assert buffer.getvalue().splitlines() == [
        "start runs/exp | step 0/2000 | 1.2M params | cpu | 16.4k tok/step",
        "step 100/2000 | loss 2.4512 | lr 9.90e-04 | 12.3k tok/s | mfu 31.2% | eta 3m10s",
        # the rate since the first report (12.5 steps/s) sets the ETA, not the warm-up
        "step 200/2000 | loss 2.3000 | lr 9.80e-04 | gnorm 0.912 | 12.5k tok/s | eta 2m24s",
        "eval step 250 | val_loss 1.9876 | val_ppl 7.30 | val_bpb 2.868",
        f"checkpoint step 250 -> {RUN / 'checkpoints' / 'step_250'}",
        "run completed at step 2000 | 4m05s | best val_loss 1.9876",
    ]


def test_auto_mode_is_plain_off_a_terminal_and_rich_on_one() -> None:
    assert not ConsoleMonitor(_console(terminal=False)[0]).rich
    assert ConsoleMonitor(_console(terminal=True)[0]).rich


def test_plain_mode_without_run_started_omits_total_and_eta() -> None:
    console, buffer = _console(terminal=False)
    ConsoleMonitor(console, mode="plain").on_event(
        TrainMetrics(
            step=5, loss=1.0, lr=1e-3, tokens_per_s=950.0, grad_norm=None, mfu=None, elapsed_s=1.0
        )
    )
    assert buffer.getvalue() == "step 5 | loss 1.0000 | lr 1.00e-03 | 950 tok/s\n"


def test_rich_mode_shows_steps_loss_and_printed_lines() -> None:
    console, buffer = _console(terminal=True)
    monitor = ConsoleMonitor(console, mode="rich")
    for event in _events():
        monitor.on_event(event)
    monitor.close()

    output = _plain(buffer)
    assert "2000/2000" in output
    assert "steps" in output
    assert "loss 2.3000" in output
    assert "12.5k tok/s" in output
    assert "eval step 250" in output
    assert "checkpoint step 250" in output
    assert "run completed at step 2000" in output


def test_rich_mode_close_mid_run_stops_the_bar_and_a_new_run_can_start() -> None:
    console, buffer = _console(terminal=True)
    monitor = ConsoleMonitor(console, mode="rich")
    for event in _events()[:6]:  # RunStarted and steps 1..5
        monitor.on_event(event)
    monitor.close()
    monitor.close()
    assert "5/2000" in _plain(buffer)

    resumed = RunStarted(
        run_dir=RUN,
        config={},
        start_step=5,
        max_steps=10,
        num_params=1,
        device="cpu",
        tokens_per_step=1,
    )
    monitor.on_event(resumed)
    monitor.on_event(RunFinished(step=10, status="interrupted", elapsed_s=1.0, best_val_loss=None))
    output = _plain(buffer)
    assert "resume runs/exp | step 5/10" in output
    assert "10/10" in output
    assert "run interrupted at step 10" in output


def test_unknown_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown progress mode 'fancy'"):
        ConsoleMonitor(_console(terminal=False)[0], mode="fancy")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (45, "45s"), (83, "1m23s"), (7500, "2h05m"), (273600, "3d04h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"), [(950, "950"), (12345, "12.3k"), (4.5e6, "4.5M"), (1.2e9, "1.2G")]
)
def test_format_rate(value: float, text: str) -> None:
    assert format_rate(value) == text
