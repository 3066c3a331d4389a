"""The image tokenizer as a neat run: `neat train -c examples/vq_grid.yaml`, then
`neat vq reconstruct`, on rendered grid-world states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from neat.cli import cli
from neat.config import load_config
from neat.data.grid_world import GridWorldSourceConfig
from neat.data.grid_world.images import StateImageBatches
from neat.data.grid_world.render import NUM_CODES, decode_image

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "vq_grid.yaml"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


def final_eval(run: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [row for row in rows if "cell_acc" in row]
    assert evals, rows[-3:]
    return evals[-1]


def test_the_example_tokenizer_reconstructs_held_out_states(trained_vq: Path) -> None:
    """Acceptance (issue #14): >= 99% of the cells of held-out states come back as the right
    tile after a CPU run of seconds, on the training sizes and on the larger shifted grids."""
    metrics = final_eval(trained_vq)
    for split in ("id", "heldout", "ood"):
        assert metrics[f"cell_acc_{split}"] >= 0.99, metrics
    # FrozenLake has no walls: six tiles, each its own code
    assert metrics["codes_used"] == NUM_CODES - 1


def test_reconstruct_writes_originals_over_reconstructions(
    trained_vq: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sheet" / "recon.png"
    code, stdout, err = invoke("vq", "reconstruct", "--checkpoint", str(trained_vq),
                               "--out", str(out), "-n", "3", "--json")  # fmt: skip
    assert code == 0, err
    figures = json.loads(stdout)
    assert figures["cell_acc"] >= 0.99 and figures["images"] >= 3
    sheet = Image.open(out)
    # two rows of ood grids (7 or 8 cells of 8 px) and their gaps
    assert sheet.size[1] >= 2 * 7 * 8 and sheet.mode == "RGB"


def test_a_language_model_checkpoint_is_refused(trained_vq: Path, tmp_path: Path) -> None:
    code, _, err = invoke("vq", "reconstruct", "--checkpoint", str(tmp_path / "missing"),
                          "--out", str(tmp_path / "x.png"))  # fmt: skip
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.block_size=15"], "square number up to 16"),
        (["evaluation={type: lm}"], "set evaluation.type: vq_reconstruction"),
        (["mvot.discrepancy_weight=1"], "remove the finetune and mvot sections"),
    ],
)
def test_config_errors_name_the_fix(tmp_path: Path, overrides: list[str], message: str) -> None:
    args = ["train", "-c", str(EXAMPLE), "--run-dir", str(tmp_path / "run")]
    for item in [*overrides, "training.max_steps=1"]:
        args += ["--set", item]
    code, _, err = invoke(*args)
    assert code == 2, err
    assert message in " ".join(err.split())
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_gpt_with_the_reconstruction_evaluator_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "model: {type: gpt, n_layer: 1, n_head: 1, n_embd: 8, block_size: 16}\n"
        "data: {type: grid_world, num_train: 10}\nevaluation: {type: vq_reconstruction}\n",
        encoding="utf-8",
    )
    code, _, err = invoke("train", "-c", str(config), "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "set model.type: vq" in " ".join(err.split())


def image_batches(seed: int = 0) -> StateImageBatches:
    cfg = load_config(EXAMPLE).data.sources[0]
    assert isinstance(cfg, GridWorldSourceConfig)
    return StateImageBatches(cfg, side=4, batch_size=6, seed=seed, device=torch.device("cpu"))


def test_batches_are_crops_around_the_agent_that_match_their_codes() -> None:
    batch = image_batches().next_batch()
    assert batch.input_ids.shape == (6, 32, 32, 3) and batch.input_ids.dtype == torch.uint8
    assert batch.targets.shape == (6, 4, 4)
    for image, codes in zip(batch.input_ids.numpy(), batch.targets.numpy(), strict=True):
        assert decode_image(image) == codes.flatten().tolist()
        assert int((codes >= 4).sum()) == 1  # exactly one agent tile in every crop


def test_batches_resume_exactly_and_depend_on_the_seed() -> None:
    first = image_batches()
    for _ in range(3):
        first.next_batch()
    resumed = image_batches()
    resumed.load_state_dict(first.state_dict())
    assert torch.equal(first.next_batch().input_ids, resumed.next_batch().input_ids)
    assert not torch.equal(
        image_batches(1).next_batch().input_ids, image_batches().next_batch().input_ids
    )


def test_rare_agent_tiles_are_drawn_as_often_as_common_ones() -> None:
    """On the goal or in a hole the agent is once per trajectory at most; the batches put it
    on each tile it can stand on evenly, so the codebook learns all three."""
    batches = image_batches()
    agents = torch.cat([batches.next_batch().targets.flatten() for _ in range(50)])
    counts = torch.bincount(agents[agents >= 4] - 4, minlength=3)
    assert counts.min() >= 0.6 * counts.max(), counts
