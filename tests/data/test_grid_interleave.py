"""MVoT's interleaved documents: each step's image is its true state, the document
round-trips through the image_text tokenizer, and a model trains on it with CE + L_D."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from neat.cli import cli
from neat.data.grid_world import GridWorldSource, decode_tiles
from neat.data.grid_world.interleave import response_images
from neat.data.grid_world.spec import GridWorldSourceConfig
from neat.data.image_text import ImageTextTokenizer, split_images

CFG = GridWorldSourceConfig(type="grid_world", num_train=40, reasoning="interleaved")


def test_each_image_is_the_state_its_step_reached() -> None:
    source = GridWorldSource(CFG)
    tokenizer = ImageTextTokenizer(7)
    for doc, problem in zip(source.documents(), source.problems("train", 40), strict=True):
        text = tokenizer.decode(tokenizer.encode(doc.text))
        assert text == doc.text
        images = response_images(text)
        assert len(images) == len(problem.states)
        for codes, state in zip(images, problem.states, strict=True):
            grid, agent = decode_tiles(codes, problem.side)
            assert grid == problem.grid and agent == state
        words = "".join(p for p in split_images(text) if isinstance(p, str))
        assert words.replace("\n\n", "\n") == problem.question + problem.response


def interleaved_config(tmp_path: Path, tokenizer: str) -> Path:
    path = tmp_path / "mvot.yaml"
    path.write_text(
        "model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 128}\n"
        "data:\n"
        "  type: grid_world\n  num_train: 200\n  reasoning: interleaved\n"
        "  format: prompt_response\n"
        f"  tokenizer: {tokenizer}\n"
        "training: {max_steps: 3, batch_size: 4, device: cpu}\n"
        "evaluation: {interval: 3, batches: 1}\n"
        "monitoring: {log_interval: 1}\n"
        "mvot: {discrepancy_weight: 1.0}\n",
        encoding="utf-8",
    )
    return path


def test_a_model_trains_on_interleaved_problems_with_the_discrepancy_loss(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    config = interleaved_config(tmp_path, "{type: image_text, codes: 7}")
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--run-dir", str(run)])
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open(encoding="utf-8")]
    assert all(row["discrepancy"] > 0 for row in rows if row["event"] == "train")


def test_interleaved_problems_with_a_byte_tokenizer_are_a_config_error(tmp_path: Path) -> None:
    config = interleaved_config(tmp_path, "{type: byte}").read_text(encoding="utf-8")
    path = tmp_path / "bad.yaml"
    path.write_text(config.replace("mvot: {discrepancy_weight: 1.0}\n", ""), encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "-c", str(path), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "reasoning: interleaved" in result.stderr and "image_text" in result.stderr
