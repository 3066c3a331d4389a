"""`training.compile_optimizer`: AdamW's step under torch.compile, the lr a tensor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.errors import ConfigError

SHORT = ["--set", "training.max_steps=6", "--set", "optimization.warmup_steps=2"]
SHORT += ["--set", "optimization.decay_steps=6", "--set", "checkpoint.interval=3"]


def _train(config: Path, run: Path, *extra: str) -> dict[int, float]:
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--run-dir", str(run), *extra])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["event"] == "train"}


LOG = ["--set", "monitoring.log_interval=1"]
ON = ["--set", "training.compile_optimizer=true", *LOG]


def test_the_compiled_step_trains_as_the_eager_one(tiny_config: Path, tmp_path: Path) -> None:
    eager = _train(tiny_config, tmp_path / "eager", *SHORT, *LOG)
    compiled = _train(tiny_config, tmp_path / "compiled", *SHORT, *ON)
    assert compiled.keys() == eager.keys() and len(compiled) == 6
    for step, loss in eager.items():  # the schedule's lr reached the compiled step each time
        assert compiled[step] == pytest.approx(loss, rel=1e-5, abs=1e-6)


@pytest.mark.slow  # three compilations of the step: about a minute on two cores
def test_a_compiled_step_run_resumes_exactly(tiny_config: Path, tmp_path: Path) -> None:
    on = ON
    whole = _train(tiny_config, tmp_path / "whole", *SHORT, *on)
    parts = tmp_path / "parts"
    _train(tiny_config, parts, *SHORT, *on, "--set", "training.max_steps=3")
    assert _train(tiny_config, parts, *SHORT, *on, "--resume", "auto") == whole


def test_another_optimizer_is_one_config_error(tiny_config: Path) -> None:
    with pytest.raises(ConfigError, match="compile_optimizer"):
        load_config(tiny_config, ["training.compile_optimizer=true", "optimization.type=muon"])
