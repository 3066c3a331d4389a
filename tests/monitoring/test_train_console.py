"""What `neat train` shows on the console, and what it keeps for log.jsonl only."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from neat.cli import cli

# Library events at info level that a 6-step tiny run makes: a token cache notice before the
# run directory exists, and checkpoint retention (keep_last 2 drops step_2 at step 6).
DETAILED = ("token_cache.", "checkpoint_dir_removed")
SHORT = ("training.max_steps=6", "checkpoint.interval=2", "evaluation.interval=3")


def _train(config: Path, run: Path, *root_options: str) -> tuple[int, str]:
    sets = [arg for value in SHORT for arg in ("--set", value)]
    args = [*root_options, "train", "-c", str(config), "--run-dir", str(run), *sets]
    result = CliRunner().invoke(cli, args, prog_name="neat")
    return result.exit_code, result.stderr


def _events(run: Path) -> list[str]:
    lines = (run / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["event"] for line in lines]


def test_train_console_shows_progress_while_log_jsonl_keeps_the_details(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    code, err = _train(tiny_config, run)

    assert code == 0, err
    assert "step 6/6" in err and "eval step 6" in err and "checkpoint step 6" in err
    assert not any(name in err for name in DETAILED)
    assert "[info" not in err
    events = _events(run)
    for name in DETAILED:
        assert any(event.startswith(name) for event in events), (name, events)
    assert events.index("run_start") > 0  # the pre-run notices come first, in order


def test_log_level_info_brings_the_details_back_to_the_console(
    tiny_config: Path, tmp_path: Path
) -> None:
    code, err = _train(tiny_config, tmp_path / "run", "--log-level", "INFO")

    assert code == 0, err
    assert all(name in err for name in DETAILED)
    assert "step 6/6" in err
