"""A disk that fills up during a run: one clear message, exit 2, the last checkpoint intact.

The full disk is real: the resumed run is a subprocess under RLIMIT_FSIZE, so a write that
would make a file larger than the limit fails with EFBIG exactly where a full disk would
fail with ENOSPC (SIGXFSZ is ignored, as it would otherwise kill the process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from neat.cli import cli
from neat.monitoring import read_metrics

DRIVER = """
import resource, signal, sys
from neat.cli import main

limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = ["neat", *sys.argv[2:]]
main()
"""

# larger than any checkpoint or cache file of the tiny model, so only metrics.jsonl hits it
FILLER_BYTES = 1_000_000
HEADROOM = 300  # room for the run_start row of the resumed run, not for its first train row


def test_full_disk_while_writing_metrics_ends_the_run_with_one_message(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    first = CliRunner().invoke(
        cli,
        ["train", "-c", str(tiny_config), "--run-dir", str(run), "--set", "training.max_steps=10"],
    )
    assert first.exit_code == 0, first.stderr
    metrics = run / "metrics.jsonl"
    filler = json.dumps({"event": "note", "step": 0, "pad": "x" * 1000}) + "\n"
    metrics.write_text(filler * (FILLER_BYTES // len(filler)) + metrics.read_text())
    size = metrics.stat().st_size
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)

    done = subprocess.run(
        [
            sys.executable,
            str(driver),
            str(size + HEADROOM),
            "train",
            "-c",
            str(tiny_config),
            "--run-dir",
            str(run),
            "--resume",
            "auto",
            "--set",
            "training.max_steps=20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 2, done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert f"cannot write {metrics}: File too large" in error
    assert "--resume auto" in error
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    # every line whole, the run's start recorded, and the checkpoint it resumed from intact
    records = read_metrics(metrics)
    assert records[-1]["event"] == "run_start" and records[-1]["step"] == 10
    assert metrics.read_bytes().endswith(b"\n")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_10"]
    inspect = CliRunner().invoke(cli, ["checkpoints", "inspect", str(run), "--json"])
    assert inspect.exit_code == 0, inspect.stderr
    assert json.loads(inspect.stdout)["step"] == 10
