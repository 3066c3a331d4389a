"""`neat ablate`: variants of the unified model and its baseline per seed, the table, and an
ablation killed mid-way that resumes without redoing a finished run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from neat.cli import cli
from neat.evaluation.ablation_table import markdown, summary
from neat.training.ablation import variants

CONFIG = {
    "name": "abl",
    "model": {
        "type": "neat",
        "n_layer": 1,
        "n_head": 2,
        "n_embd": 16,
        "block_size": 32,
        "components": {
            "titans": {"segment": 8, "persistent_tokens": 0, "memory": {"chunk_size": 4}}
        },
    },
    "data": {"type": "synthetic_math", "num_train": 200, "tokenizer": {"type": "byte"}},
    "training": {"max_steps": 4, "batch_size": 4, "device": "cpu"},
    "evaluation": {"type": "exact_match", "interval": 4, "num_problems": 4},
    "checkpoint": {"interval": 4},
    "monitoring": {"log_interval": 2},
}


def write(tmp_path: Path, **training: int) -> Path:
    config = json.loads(json.dumps(CONFIG))
    config["training"].update(training)
    path = tmp_path / "abl.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def ablate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["ablate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_modes_pick_the_variants() -> None:
    names = ["blt", "titans", "svf"]
    assert variants(names, "leave-one-out") == [
        frozenset(names),
        frozenset({"titans", "svf"}),
        frozenset({"blt", "svf"}),
        frozenset({"blt", "titans"}),
    ]
    assert variants(names, "one-at-a-time")[0] == frozenset()
    assert len(variants(names, "all")) == 8


def test_dry_run_lists_runs_with_parameters_and_svf_bases(tmp_path: Path) -> None:
    code, out, err = ablate(
        "-c",
        str(write(tmp_path)),
        "--components",
        "titans,svf",
        "--seeds",
        "2",
        "--out",
        str(tmp_path / "abl"),
        "--dry-run",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1] == "10 runs"  # per seed: titans, none, baseline, titans+svf, svf
    assert any(line.startswith("titans+svf-s1") and "from titans-s1" in line for line in lines)
    assert any(line.startswith("baseline-s0") and "params" in line for line in lines)
    assert not (tmp_path / "abl").exists()


def test_an_ablation_trains_evaluates_and_tabulates(tmp_path: Path) -> None:
    out = tmp_path / "abl"
    code, stdout, err = ablate(
        "-c",
        str(write(tmp_path)),
        "--components",
        "titans",
        "--mode",
        "one-at-a-time",
        "--seeds",
        "2",
        "--out",
        str(out),
    )
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "ablation.jsonl").read_text().splitlines()]
    assert sorted((r["variant"], r["seed"]) for r in rows) == [
        ("baseline", 0),
        ("baseline", 1),
        ("none", 0),
        ("none", 1),
        ("titans", 0),
        ("titans", 1),
    ]
    for row in rows:
        assert {"acc_id", "acc_ood", "val_loss", "tokens_per_s", "params"} <= set(row["metrics"])
    table = json.loads((out / "summary.json").read_text())
    assert table["variants"]["titans"]["acc_id"]["n"] == 2
    assert "p_exact" in table["vs_baseline"]["titans"]["acc_id"]
    assert "| titans | 2 |" in stdout
    assert (out / "summary.md").read_text(encoding="utf-8") in stdout


def test_the_table_matches_a_hand_computation() -> None:
    rows = [
        {"variant": "baseline", "seed": 0, "metrics": {"acc_id": 0.5}},
        {"variant": "baseline", "seed": 1, "metrics": {"acc_id": 0.55}},
        {"variant": "baseline", "seed": 2, "metrics": {"acc_id": 0.6}},
        {"variant": "titans", "seed": 0, "metrics": {"acc_id": 0.6}},
        {"variant": "titans", "seed": 1, "metrics": {"acc_id": 0.7}},
        {"variant": "titans", "seed": 2, "metrics": {"acc_id": 0.65}},
        {"variant": None, "seed": 0, "metrics": {"acc_id": 0.0}},  # a base: not a row
    ]
    table = summary(rows)
    titans = table["variants"]["titans"]["acc_id"]
    assert titans["mean"] == pytest.approx(0.65) and titans["std"] == pytest.approx(0.05)
    diff = table["vs_baseline"]["titans"]["acc_id"]
    assert diff["mean_diff"] == pytest.approx(0.1)  # differences 0.1, 0.15, 0.05
    assert diff["t"] == pytest.approx(0.1 / (0.05 / 3**0.5))
    assert diff["p_exact"] == pytest.approx(0.25)
    assert set(table["variants"]) == {"baseline", "titans"}
    assert "| titans | acc_id | 0.100 [" in markdown(table)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--components", "memory"], "name one or more of blt, titans, svf, mvot"),
        (["--components", "titans", "--seeds", "none"], "give a count"),
    ],
)
def test_errors_name_the_fix(tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = ablate("-c", str(write(tmp_path)), "--out", str(tmp_path / "abl"), *args)
    assert code == 2 and message in " ".join(err.split())


def test_a_model_without_components_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "gpt.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **CONFIG,
                "model": {"type": "gpt", "n_layer": 1, "n_head": 1, "n_embd": 8, "block_size": 16},
            }
        )
    )
    code, _, err = ablate("-c", str(config), "--components", "titans", "--out", str(tmp_path / "a"))
    assert code == 2 and "write it as model.type: neat" in " ".join(err.split())


def test_a_killed_ablation_resumes_without_redoing_finished_runs(tmp_path: Path) -> None:
    """SIGKILL to the whole ablation (it and its training run) while the second run trains;
    started again, the first is reused as it was and the second continues its checkpoint."""
    out = tmp_path / "abl"
    config = write(tmp_path, max_steps=30)
    raw = yaml.safe_load(config.read_text())
    raw["checkpoint"] = {"interval": 5, "keep_last": 2}
    raw["evaluation"]["interval"] = 30
    config.write_text(yaml.safe_dump(raw))
    args = [
        "-c",
        str(config),
        "--components",
        "titans",
        "--mode",
        "one-at-a-time",
        "--seeds",
        "1",
        "--no-baseline",
        "--out",
        str(out),
    ]
    child = subprocess.Popen(
        [sys.executable, "-m", "neat", "ablate", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    first, second = out / "runs" / "none-s0", out / "runs" / "titans-s0"
    deadline = time.monotonic() + 240
    try:
        while not (second / "checkpoints" / "step_5").exists():
            assert time.monotonic() < deadline and child.poll() is None, "no checkpoint to kill at"
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    done_before = (first / "metrics.jsonl").read_bytes()  # one job: the runs go in order
    code, _, err = ablate(*args)
    assert code == 0, err
    assert "finished before, reused" in err
    assert (first / "metrics.jsonl").read_bytes() == done_before  # not redone
    starts = [
        json.loads(line)
        for line in (second / "metrics.jsonl").read_text().splitlines()
        if '"run_start"' in line
    ]
    assert len(starts) == 2 and starts[1]["step"] >= 5  # resumed from its checkpoint
    rows = (out / "ablation.jsonl").read_text().splitlines()
    assert len(rows) == 2


def test_an_svf_run_reads_its_base_by_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative --out must not become a path relative to the written config's folder."""
    from neat.training.ablation import AblationRun, _config_for

    monkeypatch.chdir(tmp_path)
    run = AblationRun("svf-s0", "svf", 0, {"model": {"init_from": "<after>"}}, 10, "none-s0")
    written = yaml.safe_load(_config_for(run, Path("abl")).read_text())
    assert written["model"]["init_from"] == str(tmp_path / "abl" / "runs" / "none-s0")
