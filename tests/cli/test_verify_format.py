"""`neat verify-format` on real runs, and the scores it reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli
from neat.data.double_integrator import DoubleIntegratorSourceConfig, problems
from neat.evaluation.control_format import SCORE_KEYS, score_completions

TINY = """\
name: tiny-di
model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 64, dropout: 0.0}
data:
  type: double_integrator
  num_train: 40
  steps: 5
  test: {position: [1.0, 2.0]}
  format: prompt_response
  tokenizer: {type: char}
  val_fraction: 0.1
optimization: {lr: 3.0e-3, warmup_steps: 1}
training: {max_steps: 4, batch_size: 4, seed: 7, device: cpu}
evaluation: {type: control_format, interval: 4, num_problems: 2, max_new_tokens: 20}
monitoring: {log_interval: 1}
checkpoint: {interval: 4, keep_last: 1}
"""

SOURCE = DoubleIntegratorSourceConfig(steps=5, num_train=10)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("di")
    config = folder / "tiny.yaml"
    config.write_text(TINY, encoding="utf-8")
    run = folder / "run"
    code, _, err = invoke("train", "-c", str(config), "--run-dir", str(run))
    assert code == 0, err
    return run


def test_verify_format_reports_scores_as_json(tiny_run: Path) -> None:
    code, out, err = invoke("verify-format", "--checkpoint", str(tiny_run), "-n", "4", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == 4 and report["split"] == "test"
    for key in SCORE_KEYS:
        assert key in report
        if not key.startswith("cost_ratio"):
            assert 0.0 <= report[key] <= 1.0
    for key in ("cost_ratio", "cost_ratio_median"):
        assert report[key] is None or report[key] >= 0.0


def test_verify_format_table_shows_completions_of_either_split(tiny_run: Path) -> None:
    args = ["--checkpoint", str(tiny_run), "-n", "2", "--split", "test_ood", "--show", "1"]
    code, out, err = invoke("verify-format", *args, "--max-new-tokens", "10")
    assert code == 0, err
    assert "2 test_ood problems" in out and "all five" in out and "cost ratio" in out
    assert "[0] Steer x''=u from x=" in out


def test_verify_format_refuses_a_run_without_the_task(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "text-run"
    code, _, err = invoke(
        "train", "-c", str(tiny_config), "--run-dir", str(run), "--set", "training.max_steps=2"
    )
    assert code == 0, err
    code, _, err = invoke("verify-format", "--checkpoint", str(run), "-n", "2")
    assert code == 2
    assert "was not trained on a double_integrator source" in err and str(run) in err
    code, _, err = invoke("verify-format", "--checkpoint", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere" in err


def test_score_completions_of_the_reference_and_of_broken_answers() -> None:
    drawn = problems(SOURCE, "test", 3)
    perfect = score_completions(drawn, [p.answer for p in drawn], SOURCE)
    assert perfect == {**dict.fromkeys(SCORE_KEYS, 1.0), "cost_ratio": pytest.approx(1.0)}

    broken = [
        drawn[0].answer.replace("</REASONING>", ""),  # only the reasoning tag is lost
        drawn[1].answer.replace("<CONTROLS>", "<CONTROLS>9,"),  # 6 controls, one out of bounds
        "no answer at all",
    ]
    scores = score_completions(drawn, broken, SOURCE)
    assert scores["fmt_reasoning"] == pytest.approx(1 / 3)
    assert scores["fmt_controls"] == pytest.approx(2 / 3)
    assert scores["fmt_proper"] == pytest.approx(1 / 3)
    assert scores["fmt_count"] == pytest.approx(1 / 3)
    assert scores["fmt_bounds"] == pytest.approx(1 / 3)
    assert scores["fmt_all"] == 0.0
    assert scores["parsed"] == pytest.approx(2 / 3)
    # the first is the optimal controls; the second applies a saturated +3 first: costlier
    assert scores["cost_ratio"] > 1.0
    nothing = score_completions(drawn[:1], ["<CONTROLS>abc</CONTROLS>"], SOURCE)
    assert nothing["parsed"] == 0.0 and math.isnan(nothing["cost_ratio"])
