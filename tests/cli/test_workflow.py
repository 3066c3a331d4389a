"""The user's walk through the real CLI: train, inspect the run, evaluate, generate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.monitoring import read_metrics

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


def test_train_writes_a_complete_run_directory(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, out, err = invoke("train", "-c", str(tiny_config), "--run-dir", str(run))
    assert code == 0, err
    assert "done: 30 steps" in out

    for name in ["config.yaml", "tokenizer.json", "metrics.jsonl", "log.jsonl"]:
        assert (run / name).is_file(), name
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert checkpoints == ["step_20", "step_30"]  # keep_last: 2 of 10, 20, 30
    step_30 = run / "checkpoints" / "step_30"
    for name in ["model.safetensors", "state.json", "tokenizer.json"]:
        assert (step_30 / name).is_file()
    state = json.loads((step_30 / "state.json").read_text())
    assert state["step"] == 30
    assert {"python", "numpy", "torch"} <= set(state["rng_state"])
    assert state["data_state"] and state["format_version"] >= 1
    assert all(len(digest) == 64 for digest in state["files"].values())

    records = read_metrics(run / "metrics.jsonl")
    train = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in train] == list(range(1, 31))
    assert {"loss", "lr", "tokens_per_s"} <= set(train[0])
    assert [r["step"] for r in evals] == [10, 20, 30]
    assert {"val_loss", "val_ppl", "val_bpb"} <= set(evals[0])
    assert train[-1]["loss"] < train[0]["loss"]

    log_lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any(line["event"] == "eval" and line["step"] == 30 for line in log_lines)

    resolved = (run / "config.yaml").read_text()
    code, out, _ = invoke("config", "show", "-c", str(run / "config.yaml"))
    assert code == 0 and out == resolved  # re-running with it reproduces the run


def test_eval_and_generate_from_run_or_checkpoint(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert invoke("train", "-c", str(tiny_config), "--run-dir", str(run))[0] == 0

    code, out, err = invoke("eval", "-c", str(tiny_config), "--checkpoint", str(run), "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["step"] == 30
    final_eval = [r for r in read_metrics(run / "metrics.jsonl") if r["event"] == "eval"][-1]
    assert abs(metrics["val_loss"] - final_eval["val_loss"]) < 1e-6
    assert metrics["val_bpb"] > 0 and metrics["val_ppl"] > 1

    args = ["--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "3"]
    first = invoke("generate", "--checkpoint", str(run), *args)
    again = invoke("generate", "--checkpoint", str(run / "checkpoints" / "step_30"), *args)
    other = invoke("generate", "--checkpoint", str(run), *args[:-1], "4")
    assert first[0] == 0, first[2]
    assert first[1] == again[1]
    assert first[1].startswith("ROMEO:") and len(first[1].rstrip("\n")) == len("ROMEO:") + 40
    assert other[1] != first[1]


def test_config_commands_init_and_help(tmp_path: Path, tiny_config: Path) -> None:
    code, out, _ = invoke("init", str(tmp_path / "exp"))
    assert code == 0 and (tmp_path / "exp" / "neat.yaml").is_file()
    assert invoke("init", str(tmp_path / "exp"))[0] == 2  # refuses to overwrite
    code, out, _ = invoke("config", "validate", "-c", str(tmp_path / "exp" / "neat.yaml"))
    assert code == 0 and "valid" in out

    code, out, _ = invoke("config", "show", "-c", str(tiny_config), "--set", "training.max_steps=5")
    assert code == 0 and "max_steps: 5" in out

    code, out, _ = invoke("--help")
    assert code == 0
    for command in ["train", "eval", "generate", "config", "init"]:
        assert command in out
    for command in ["train", "eval", "generate", "init"]:
        code, out, _ = invoke(command, "--help")
        assert code == 0 and "Usage: neat" in out and "--help" in out


def test_root_cli_shim_matches_the_entry_point() -> None:
    shim = subprocess.run(
        [sys.executable, "cli.py", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    )
    module = subprocess.run(
        [sys.executable, "-m", "neat", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "neat trains language models" in shim.stdout
    assert shim.stdout == module.stdout


def test_resume_auto_finds_the_newest_run_of_the_config(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("train", "-c", str(tiny_config), "--set", "training.max_steps=10")[0] == 0
    [run] = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert run.name.startswith("tiny-")
    code, _, err = invoke(
        "train", "-c", str(tiny_config), "--resume", "auto", "--set", "training.max_steps=15"
    )
    assert code == 0, err
    assert [p for p in (tmp_path / "runs").iterdir() if p.is_dir()] == [run]  # not a new run
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["event"] == "train"]
    assert steps == list(range(1, 16))


def test_init_from_starts_from_trained_weights_with_a_fresh_optimizer(
    tiny_config: Path, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    assert invoke("train", "-c", str(tiny_config), "--run-dir", str(base))[0] == 0
    base_train = [r for r in read_metrics(base / "metrics.jsonl") if r["event"] == "train"]
    tuned = tmp_path / "tuned"
    code, _, err = invoke(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(tuned),
        "--set",
        f"model.init_from={base}",
        "--set",
        "training.max_steps=3",
    )
    assert code == 0, err
    tuned_train = [r for r in read_metrics(tuned / "metrics.jsonl") if r["event"] == "train"]
    assert [r["step"] for r in tuned_train] == [1, 2, 3]  # step count starts again
    fresh_first = base_train[0]["loss"]
    assert tuned_train[0]["loss"] < fresh_first - 0.3  # it starts where the base run ended
    assert abs(tuned_train[0]["loss"] - base_train[-1]["loss"]) < 0.3
