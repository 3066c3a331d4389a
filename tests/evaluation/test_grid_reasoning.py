"""Grid-world scoring: the reference responses score perfectly, a wrong image or answer is
counted wrong, and a run reports task and visualization accuracy per split."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from neat.cli import cli
from neat.data.grid_world import GridWorldSource, tile_codes
from neat.data.grid_world.codec import TileCodec
from neat.data.grid_world.spec import GridWorldSourceConfig
from neat.data.image_text import image_segment
from neat.evaluation.grid_reasoning import images_right, parse_answer, redundant_images

CFG = GridWorldSourceConfig(type="grid_world", num_train=10, reasoning="interleaved")


def test_the_answer_is_the_last_finished_answer_line() -> None:
    assert parse_answer("step 1: up\nanswer: (0,1)\n") == "(0,1)"
    assert parse_answer("answer: no\nanswer: yes\n") == "yes"
    assert parse_answer("answer: (0,") is None  # cut off before its newline
    assert parse_answer("step 1: up\n") is None


def test_reference_responses_score_every_answer_and_image() -> None:
    source = GridWorldSource(CFG)
    for problem in source.problems("test", 10):
        text = source.response_of(problem)
        assert parse_answer(text) == problem.answer
        assert images_right(problem, text) == len(problem.states)


def test_a_wrong_state_or_a_malformed_image_is_not_counted() -> None:
    source = GridWorldSource(CFG)
    problem = next(p for p in source.problems("train", 10) if len(p.states) >= 2)
    text = source.response_of(problem)
    right = image_segment(tile_codes(problem.grid, problem.states[0]))
    wrong = image_segment(
        tile_codes(
            problem.grid, problem.start if problem.start != problem.states[0] else problem.goal
        )
    )
    assert images_right(problem, text.replace(right, wrong, 1)) == len(problem.states) - 1
    assert (
        images_right(problem, text.replace(right, image_segment([0, 1]), 1))
        == len(problem.states) - 1
    )


def test_redundancy_counts_images_that_change_cells_the_move_does_not_touch() -> None:
    """MVoT's pattern redundancy: the agent drawn in the wrong place between its old and new
    cell is a wrong image but not a redundant one; a changed cell elsewhere is both."""
    source, codec = GridWorldSource(CFG), TileCodec()
    problem = next(
        p for p in source.problems("train", 50) if len(p.states) >= 2 and p.states[0] != p.start
    )
    text = source.response_of(problem)
    assert redundant_images(problem, text, codec) == (0, len(problem.states))
    right = tile_codes(problem.grid, problem.states[0])
    # the agent left where it stood: a wrong state, inside the area the move modifies
    stayed = text.replace(
        image_segment(right), image_segment(tile_codes(problem.grid, problem.start)), 1
    )
    assert redundant_images(problem, stayed, codec) == (0, len(problem.states))
    assert images_right(problem, stayed) == len(problem.states) - 1
    # a floor cell far from the move turned into a hole: a pattern where nothing changed
    touched = {problem.start, problem.states[0]}
    far = next(
        i for i, code in enumerate(right) if code == 0 and divmod(i, problem.side) not in touched
    )
    extra = [2 if i == far else code for i, code in enumerate(right)]
    changed = text.replace(image_segment(right), image_segment(extra), 1)
    assert redundant_images(problem, changed, codec) == (1, len(problem.states))
    assert images_right(problem, changed) == len(problem.states) - 1
    # an image of the wrong size is neither: it is left out of the count
    cut = text.replace(image_segment(right), image_segment([0, 1]), 1)
    assert redundant_images(problem, cut, codec) == (0, len(problem.states) - 1)


def run_with(tmp_path: Path, reasoning: str) -> dict[str, float]:
    tokenizer = "{type: image_text, codes: 7}" if reasoning == "interleaved" else "{type: byte}"
    config = tmp_path / f"{reasoning}.yaml"
    config.write_text(
        "model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 512}\n"
        f"data: {{type: grid_world, num_train: 100, reasoning: {reasoning}, "
        f"format: prompt_response, tokenizer: {tokenizer}}}\n"
        "training: {max_steps: 2, batch_size: 2, device: cpu}\n"
        "evaluation: {type: grid_reasoning, interval: 2, num_problems: 2, max_new_tokens: 48}\n",
        encoding="utf-8",
    )
    run = tmp_path / reasoning
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--run-dir", str(run)])
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open(encoding="utf-8")]
    return next(row for row in rows if row["event"] == "eval")


def test_a_run_reports_task_and_visualization_accuracy(tmp_path: Path) -> None:
    interleaved = run_with(tmp_path, "interleaved")
    for split in ("id", "heldout", "ood"):
        assert 0.0 <= interleaved[f"acc_{split}"] <= 1.0
        assert 0.0 <= interleaved[f"vis_acc_{split}"] <= 1.0
        assert 0.0 <= interleaved.get(f"vis_redundancy_{split}", 0.0) <= 1.0
    assert interleaved["val_loss"] > 0
    text = run_with(tmp_path, "text")
    assert "acc_ood" in text and not any(k.startswith("vis_acc") for k in text)


def test_a_context_too_short_for_the_responses_is_named() -> None:
    """Generation stops at the context: answers that cannot fit would count as wrong unseen."""
    import torch
    from structlog.testing import capture_logs

    from neat.data.image_text import ImageTextTokenizer
    from neat.evaluation.grid_reasoning import GridReasoningEvaluator

    source = GridWorldSource(CFG)
    drawn = source.problems("test_ood", 4)
    with capture_logs() as logs:
        GridReasoningEvaluator(
            drawn,
            ImageTextTokenizer(7),
            torch.device("cpu"),
            block_size=128,
            interleaved=True,
            responses=[source.response_of(p) for p in drawn],
        )
    warning = next(e for e in logs if e["event"] == "grid_reasoning_context_too_short")
    assert warning["problems"] == 4 and warning["needed"] > 128
    assert f"model.block_size to at least {warning['needed']}" in warning["hint"]
