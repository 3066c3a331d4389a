from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
from rich.console import Console

from neat.errors import ConfigError
from neat.monitoring import (
    StructlogMonitor,
    TrainMetrics,
    add_json_log_file,
    configure_logging,
)


def _console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120), buffer


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_structlog_entry_lands_as_a_json_line(tmp_path: Path) -> None:
    configure_logging(_console()[0])
    detach = add_json_log_file(tmp_path / "run" / "log.jsonl")

    structlog.get_logger("neat.test").info("step_done", step=3, loss=1.25, path=Path("a/b"))
    detach()

    [line] = _lines(tmp_path / "run" / "log.jsonl")
    assert line["event"] == "step_done"
    assert (line["step"], line["loss"], line["path"]) == (3, 1.25, str(Path("a/b")))
    assert (line["level"], line["logger"]) == ("info", "neat.test")
    assert line["timestamp"].endswith("Z")


def test_stdlib_records_and_context_vars_are_captured(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    configure_logging(_console()[0], json_file=path)

    with structlog.contextvars.bound_contextvars(run_id="r1"):
        logging.getLogger("thirdparty").warning("disk %s full", "/tmp")

    [line] = _lines(path)
    assert line["event"] == "disk /tmp full"
    assert (line["level"], line["logger"], line["run_id"]) == ("warning", "thirdparty", "r1")


def test_configuring_twice_does_not_duplicate_lines(tmp_path: Path) -> None:
    console, buffer = _console()
    path = tmp_path / "log.jsonl"
    configure_logging(console, json_file=path)
    configure_logging(console, json_file=path)

    structlog.get_logger("neat.test").info("once")

    assert len(_lines(path)) == 1
    [console_line] = buffer.getvalue().splitlines()
    assert "once" in console_line and "\x1b[" not in console_line  # no colours off a terminal


def test_terminal_console_gets_pretty_output() -> None:
    console, buffer = _console(terminal=True)
    configure_logging(console)

    structlog.get_logger("neat.test").info("pretty", step=7)

    text = buffer.getvalue()
    assert "pretty" in text
    assert "step" in text
    assert not text.lstrip().startswith("{")


def test_level_filters_and_bad_level_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    configure_logging(_console()[0], level="warning", json_file=path)
    log = structlog.get_logger("neat.test")
    log.info("hidden")
    log.warning("shown")

    assert [line["event"] for line in _lines(path)] == ["shown"]
    with pytest.raises(ConfigError, match="unknown log level 'LOUD'"):
        configure_logging(level="LOUD")


def test_detaching_stops_writing_and_closes_the_file(tmp_path: Path) -> None:
    configure_logging(_console()[0])
    path = tmp_path / "log.jsonl"
    detach = add_json_log_file(path)
    log = structlog.get_logger("neat.test")

    log.info("before")
    detach()
    detach()  # idempotent
    log.info("after")

    assert [line["event"] for line in _lines(path)] == ["before"]
    assert all(h.name != "neat.json.run" for h in logging.getLogger().handlers)


def test_run_log_file_survives_reconfiguration(tmp_path: Path) -> None:
    configure_logging(_console()[0])
    path = tmp_path / "log.jsonl"
    detach = add_json_log_file(path)
    configure_logging(_console()[0])

    structlog.get_logger("neat.test").info("kept")
    detach()

    assert [line["event"] for line in _lines(path)] == ["kept"]


def test_structlog_monitor_writes_to_the_run_log(tmp_path: Path) -> None:
    configure_logging(_console()[0])
    path = tmp_path / "log.jsonl"
    detach = add_json_log_file(path)

    StructlogMonitor().on_event(
        TrainMetrics(
            step=10, loss=2.0, lr=1e-3, tokens_per_s=5.0, grad_norm=None, mfu=0.3, elapsed_s=1.0
        )
    )
    detach()

    [line] = _lines(path)
    assert (line["event"], line["logger"], line["step"], line["mfu"]) == (
        "train",
        "neat.train",
        10,
        0.3,
    )


def test_console_level_keeps_info_out_of_the_console_but_in_the_log_file(tmp_path: Path) -> None:
    console, buffer = _console()
    path = tmp_path / "log.jsonl"
    configure_logging(console, level="INFO", json_file=path, console_level="WARNING")
    log = structlog.get_logger("neat.persistence")

    log.info("checkpoint_dir_removed", path="step_10")
    log.warning("rng_reseeded")

    assert [line["event"] for line in _lines(path)] == ["checkpoint_dir_removed", "rng_reseeded"]
    [shown] = buffer.getvalue().splitlines()
    assert "rng_reseeded" in shown


LOG_FULL_DRIVER = """
import resource, signal, sys
from pathlib import Path
import structlog
from rich.console import Console
from neat.errors import DiskFullError
from neat.monitoring import configure_logging

path, limit = Path(sys.argv[1]), int(sys.argv[2])
configure_logging(Console(stderr=True), json_file=path)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
log = structlog.get_logger("neat.test")
try:
    log.info("a_long_event_name_that_does_not_fit", detail="x" * 200)
except DiskFullError as exc:
    print("refused:", exc)
log.info("later")  # dropped quietly: the run is already ending with the error above
"""


def test_full_disk_under_the_log_file_raises_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"event": "old"}\n' * 10)
    size = path.stat().st_size
    driver = tmp_path / "driver.py"
    driver.write_text(LOG_FULL_DRIVER)

    done = subprocess.run(
        [sys.executable, str(driver), str(path), str(size + 50)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"refused: cannot write {path}: File too large")
    assert "Logging error" not in done.stderr and "Traceback" not in done.stderr
    assert path.stat().st_size == size  # no half line for the resumed run to glue onto
