"""`neat generate --problem`: a grid-world run's reasoning over one problem, on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from neat.cli import cli

CONFIG = """\
model: {type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 512}
data: {type: grid_world, num_train: 100, reasoning: interleaved, format: prompt_response,
       tokenizer: {type: image_text, codes: 7}}
training: {max_steps: 2, batch_size: 2, device: cpu}
evaluation: {interval: 2, batches: 1}
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grid")
    config = root / "mvot.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    code, _, err = invoke("train", "-c", str(config), "--run-dir", str(root / "run"))
    assert code == 0, err
    return root / "run"


def test_the_reasoning_and_its_images_are_written(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "solved"
    code, stdout, err = invoke("generate", "--checkpoint", str(run), "--problem", "ood:1",
                               "--out", str(out), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert "question:" in stdout and "answer " in stdout and "images right" in stdout
    start = Image.open(out / "start.png")
    assert start.size[0] == start.size[1] >= 7 * 16  # an ood grid: side 7 or 8, 16 px cells
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 1
    assert "question:" in (out / "reasoning.md").read_text(encoding="utf-8")
    for png in out.glob("step_*.png"):
        assert Image.open(png).size == start.size


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--problem", "later:1", "--out", "OUT"], "SPLIT:INDEX"),
        (["--problem", "ood:1"], "--problem and --out go together"),
    ],
)
def test_problem_errors_say_what_to_pass(
    run: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [a.replace("OUT", str(tmp_path / "o")) for a in args]
    code, _, err = invoke("generate", "--checkpoint", str(run), *args)
    assert code != 0
    assert message in err
    assert not (tmp_path / "o").exists()


def test_an_existing_out_folder_is_left_alone(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "solved"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    code, _, err = invoke("generate", "--checkpoint", str(run), "--problem", "id:0",
                          "--out", str(out))  # fmt: skip
    assert code != 0
    assert str(out) in err
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"
