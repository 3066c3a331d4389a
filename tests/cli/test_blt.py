"""`neat blt patch` against a real run directory of a tiny byte-level entropy model."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.config import load_config
from neat.di import build_container

SHAKESPEARE = Path(__file__).resolve().parents[2] / "examples" / "data" / "tinyshakespeare.txt"
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east."
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

BYTE_CONFIG = """\
name: tiny-entropy
model: {type: gpt, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, dropout: 0.0}
data: {type: text, path: corpus.txt, tokenizer: {type: byte}, val_fraction: 0.1}
optimization: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 10, decay_steps: 60}
training: {max_steps: 60, batch_size: 8, seed: 7, device: cpu, compile: false}
evaluation: {interval: 60, batches: 2}
monitoring: {log_interval: 30}
checkpoint: {interval: 60, keep_last: 1}
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread: two spin-wait when other processes hold a core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def byte_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("blt-cli")
    text = SHAKESPEARE.read_text(encoding="utf-8")
    (root / "corpus.txt").write_text(text[:40_000], encoding="utf-8")
    (root / "tiny.yaml").write_text(BYTE_CONFIG, encoding="utf-8")
    run = root / "run"
    build_container(load_config(root / "tiny.yaml"), run_dir=run).trainer().fit()
    return run


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["blt", *args], prog_name="neat", env=env)
    return result.exit_code, result.stdout, result.stderr


def test_json_shows_the_patches_and_their_figures(byte_run: Path) -> None:
    code, out, err = invoke("patch", "--entropy-model", str(byte_run), "--text", TEXT, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert "".join(report["patches"]) == TEXT
    assert sum(report["lengths"]) == report["num_bytes"] == len(TEXT)
    assert report["num_patches"] == len(report["patches"])
    assert report["mean_patch_size"] == pytest.approx(4.0, rel=0.1)  # the default target
    assert 0.0 < report["word_start_fraction"] <= 1.0
    assert len(report["entropies"]) == len(TEXT) and report["mode"] == "global"


def test_plain_output_marks_patches_with_bars(byte_run: Path) -> None:
    code, out, err = invoke(
        "patch", "--entropy-model", str(byte_run / "checkpoints" / "step_60"), "--text", TEXT,
        "--target-patch-size", "5", "--mode", "monotonic",
    )  # fmt: skip
    assert code == 0, err
    shown, summary = out.rsplit("\n", 2)[0], out.rsplit("\n", 2)[1]
    assert "|" in shown and shown.replace("|", "") == TEXT
    assert "\x1b[" not in out  # no colours without a terminal
    n = shown.count("|") + 1
    assert summary.startswith(f"{n} patches, mean patch size {len(TEXT) / n:.2f} bytes")
    figures = r"threshold -?\d+\.\d{4} nats \(monotonic\), \d+\.\d% of patch starts at word"
    assert re.search(figures, summary)


def test_a_terminal_gets_coloured_patches(byte_run: Path) -> None:
    code, out, err = invoke(
        "patch", "--entropy-model", str(byte_run), "--text", TEXT, env={"FORCE_COLOR": "1"}
    )
    assert code == 0, err
    assert "\x1b[" in out and "|" not in out.splitlines()[0]


def test_file_input_threshold_and_window(byte_run: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text(TEXT * 3, encoding="utf-8")
    args = ["--entropy-model", str(byte_run), "--file", str(path), "--json"]
    code, out, err = invoke("patch", *args, "--threshold", "1.5", "--window", "16")
    assert code == 0, err
    report = json.loads(out)
    assert report["threshold"] == 1.5 and "".join(report["patches"]) == TEXT * 3
    code, out, _ = invoke("patch", *args, "--target-patch-size", "6", "--max-patch-length", "8")
    assert code == 0 and max(json.loads(out)["lengths"]) <= 8


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is optional")
def test_plot_writes_a_png(byte_run: Path, tmp_path: Path) -> None:
    png = tmp_path / "plots" / "entropy.png"
    code, out, err = invoke(
        "patch", "--entropy-model", str(byte_run), "--text", TEXT, "--plot", str(png)
    )
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot: {png}" in out


@pytest.mark.skipif(HAS_MATPLOTLIB, reason="matplotlib is installed")
def test_plot_without_matplotlib_says_how_to_get_it(byte_run: Path, tmp_path: Path) -> None:
    png = tmp_path / "entropy.png"
    code, _, err = invoke(
        "patch", "--entropy-model", str(byte_run), "--text", TEXT, "--plot", str(png)
    )
    assert code == 2 and "pip install 'neat[plots]'" in err and not png.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "a", "--file", "x.txt"], "exactly one of --text and --file"),
        ([], "exactly one of --text and --file"),
        (["--text", ""], "empty"),
        (["--file", "missing.txt"], "does not exist"),
        (["--text", "a", "--threshold", "1", "--target-patch-size", "4"], "not both"),
        (["--text", "abc", "--window", "64"], "block_size 32"),
    ],
)
def test_user_errors_are_one_message_and_exit_2(
    byte_run: Path, args: list[str], message: str
) -> None:
    code, out, err = invoke("patch", "--entropy-model", str(byte_run), *args)
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith("Error: ") and message in err.splitlines()[-1]


def test_a_missing_checkpoint_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke("patch", "--entropy-model", str(tmp_path / "nope"), "--text", "a")
    assert code == 2 and "does not exist" in err


def test_a_char_level_model_is_refused(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "char-run"
    build_container(load_config(tiny_config), run_dir=run).trainer().fit()
    code, _, err = invoke("patch", "--entropy-model", str(run), "--text", "a")
    assert code == 2 and "not a byte-level model" in err and "vocab" in err
