"""Image codes of grid-world states: the exact tile codes, and a trained VQ tokenizer's
(`image_tokenizer: RUN`), round-tripped through the interleaved documents and the tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.data.grid_world import GridWorldSource, problems, render_state, tile_codes
from neat.data.grid_world.codec import TileCodec, VQCodec, codec_for, decode_state
from neat.data.grid_world.interleave import response_images
from neat.data.grid_world.spec import GridWorldSourceConfig
from neat.data.image_text import ImageTextTokenizer
from neat.errors import ConfigError

K = 32  # examples/vq_grid.yaml's codebook_size


def interleaved(image_tokenizer: Path | None = None) -> GridWorldSourceConfig:
    return GridWorldSourceConfig(
        type="grid_world",
        num_train=20,
        reasoning="interleaved",
        image_tokenizer=str(image_tokenizer) if image_tokenizer else None,
    )


def test_tile_codes_are_the_tiles_and_their_pixels() -> None:
    codec = TileCodec()
    problem = problems(interleaved(), "train", 1)[0]
    codes = codec.encode(problem.grid, problem.start)
    assert codes == tile_codes(problem.grid, problem.start)
    assert decode_state(codec, codes, problem.side) == (problem.grid, problem.start)
    assert (codec.image(codes, problem.side) == render_state(problem.grid, problem.start)).all()
    assert codec.vectors("embeddings").shape == (7, 8 * 8 * 3)


def test_interleaved_documents_round_trip_with_vq_codes(trained_vq: Path) -> None:
    """Acceptance (issue #14): text and image codes back to the problem: every image of every
    document, written in the VQ's codes, tokenized and decoded, reads back as its state."""
    source = GridWorldSource(interleaved(trained_vq))
    assert isinstance(source.codec, VQCodec)
    tokenizer = ImageTextTokenizer(K)
    images_seen = 0
    for problem in source.problems("test", 5):  # the ood split: grids larger than training's
        text = problem.question + source.response_of(problem)
        assert tokenizer.decode(tokenizer.encode(text)) == text
        images = response_images(text)
        assert len(images) == len(problem.states)
        for codes, agent in zip(images, problem.states, strict=True):
            assert decode_state(source.codec, codes, problem.side) == (problem.grid, agent)
            images_seen += 1
        # the codes are the tokenizer's, not the tile types
        assert images[0] != tile_codes(problem.grid, problem.states[0])
    assert images_seen >= 15


def test_vq_vectors_are_its_codebook_and_its_decoded_cells(trained_vq: Path) -> None:
    codec = codec_for(str(trained_vq))
    assert isinstance(codec, VQCodec) and codec.num_codes == K
    assert torch.equal(codec.vectors("embeddings"), codec.model.quantizer.codebook)
    pixels = codec.vectors("pixels")
    assert pixels.shape == (K, 8 * 8 * 3)
    # the code of each tile decodes to that tile's pixels
    tiles = TileCodec().vectors("pixels")
    problem = problems(interleaved(), "train", 1)[0]
    cells = codec.encode(problem.grid, problem.start)
    truth = tile_codes(problem.grid, problem.start)
    for code, tile in zip(cells, truth, strict=True):
        assert (pixels[code] - tiles[tile]).abs().max() < 0.1


def test_the_source_fingerprint_follows_the_image_codes(trained_vq: Path) -> None:
    tiles = GridWorldSource(interleaved()).fingerprint()
    assert GridWorldSource(interleaved(trained_vq)).fingerprint() != tiles
    assert (
        GridWorldSource(interleaved(trained_vq)).fingerprint()
        == GridWorldSource(interleaved(trained_vq)).fingerprint()
    )


def test_image_tokenizer_needs_interleaved_reasoning_and_a_vq_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set reasoning: interleaved"):
        GridWorldSourceConfig(type="grid_world", image_tokenizer=str(tmp_path))
    config = tmp_path / "gpt.yaml"
    config.write_text(
        "model: {type: gpt, n_layer: 1, n_head: 1, n_embd: 8, block_size: 16}\n"
        "data: {type: grid_world, num_train: 10, tokenizer: {type: byte}}\n"
        "training: {max_steps: 1, batch_size: 2, device: cpu}\n"
        "evaluation: {interval: 1, batches: 1}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["train", "-c", str(config), "--run-dir", str(tmp_path / "gpt")]
    )
    assert result.exit_code == 0, result.stderr
    with pytest.raises(ConfigError, match="not an image tokenizer"):
        codec_for(str(tmp_path / "gpt"))


MVOT = """\
model: {{type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 512}}
data: {{type: grid_world, num_train: 60, reasoning: interleaved, format: prompt_response,
       image_tokenizer: {vq}, tokenizer: {{type: image_text, codes: {codes}}}}}
training: {{max_steps: 2, batch_size: 2, device: cpu}}
mvot: {{discrepancy_weight: 1.0}}
evaluation: {{type: grid_reasoning, interval: 2, num_problems: 2, max_new_tokens: 64}}
"""


def train_mvot(tmp_path: Path, vq: Path, codes: int) -> tuple[int, str, Path]:
    config = tmp_path / f"mvot{codes}.yaml"
    config.write_text(MVOT.format(vq=vq, codes=codes), encoding="utf-8")
    run = tmp_path / f"run{codes}"
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--run-dir", str(run)])
    return result.exit_code, result.stderr, run


def test_mvot_trains_on_vq_codes_and_reports_visualization(
    trained_vq: Path, tmp_path: Path
) -> None:
    code, err, run = train_mvot(tmp_path, trained_vq, K)
    assert code == 0, err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open(encoding="utf-8")]
    train = next(row for row in rows if row["event"] == "train")
    assert train["discrepancy"] > 0  # distances from the VQ's codebook
    evaluated = next(row for row in rows if row["event"] == "eval")
    assert 0.0 <= evaluated["vis_acc"] <= 1.0 and "acc_ood" in evaluated
    out = tmp_path / "solved"
    result = CliRunner().invoke(cli, ["generate", "--checkpoint", str(run), "--problem", "id:0",
                                      "--out", str(out), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (out / "index.html").exists()


def test_a_tokenizer_with_too_few_codes_is_named(trained_vq: Path, tmp_path: Path) -> None:
    code, err, run = train_mvot(tmp_path, trained_vq, 7)
    assert code == 2
    assert "data.tokenizer.codes: 32" in " ".join(err.split())
    assert not (run / "checkpoints").exists()
