"""Every error a user can cause: one clear message, exit code 2, nothing written half."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stderr


def train(config: Path, run: Path, *overrides: str) -> tuple[int, str]:
    sets = [arg for value in overrides for arg in ("--set", value)]
    return invoke("train", "-c", str(config), "--run-dir", str(run), *sets)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training.lrr=0.1", "training.lrr: unknown key (did you mean 'optimization.lr'?)"),
        ("optimization.lrr=0.1", "optimization.lrr: unknown key (did you mean 'optimization.lr'?)"),
        ("training.batch_size=ten", "training.batch_size: Input should be a valid integer"),
        ("model.type=mamba", "unknown model type 'mamba'; known types: bi_encoder, blt, gpt"),
        (
            "data.tokenizer.type=bpe2",
            "unknown tokenizer type 'bpe2'; known types: bpe, byte, char, hf",
        ),
        ("monitoring.monitors=[console, wandb]", "unknown monitor type 'wandb'"),
        ("model.n_embd=33", "n_embd (33) must be divisible by n_head (2)"),
    ],
)
def test_bad_config_values(tiny_config: Path, tmp_path: Path, override: str, expected: str) -> None:
    run = tmp_path / "run"
    code, err = train(tiny_config, run, override)
    assert code == 2
    assert expected in err
    assert err.count("Error:") == 1 and "Traceback" not in err
    assert not run.exists()


def test_missing_config_file(tmp_path: Path) -> None:
    code, err = invoke("train", "-c", str(tmp_path / "nope.yaml"))
    assert code == 2 and "config file not found" in err


def test_missing_data_file(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, err = train(tiny_config, run, "data.path=missing.txt")
    assert code == 2
    assert "missing.txt" in err and "data.path" in err
    assert not run.exists()


def test_empty_corpus(tiny_config: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    run = tmp_path / "run"
    empty = tmp_path / "empty.txt"
    code, err = train(tiny_config, run, f"data.path={empty}", "data.tokenizer.type=byte")
    assert code == 2 and "empty" in err.lower()
    assert not run.exists()


def test_corpus_shorter_than_one_batch(tiny_config: Path, tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text("To be, or not to be: that is the question.\n" * 4)
    run = tmp_path / "run"
    short = tmp_path / "short.txt"
    code, err = train(tiny_config, run, f"data.path={short}", "data.val_fraction=0.5")
    assert code == 2
    assert "training.batch_size" in err and "model.block_size" in err
    assert not run.exists()


def test_checkpoint_from_another_model_config(tiny_config: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert train(tiny_config, first, "training.max_steps=10")[0] == 0
    other = tmp_path / "other"
    code, err = invoke(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(other),
        "--resume",
        str(first),
        "--set",
        "model.n_embd=64",
    )
    assert code == 2
    assert re.search(
        r"tensor 'wte.weight' has shape \(\d+, 32\) in the checkpoint but \(\d+, 64\) in the model",
        err,
    )
    assert "model.n_embd: 32 in the checkpoint, 64 now" in err
    assert not other.exists()

    code, err = invoke(
        "eval", "-c", str(tiny_config), "--checkpoint", str(first), "--set", "model.n_layer=3"
    )
    assert code == 2 and "blocks.2.ln_1.weight" in err and "model.n_layer: 2" in err


def test_corrupted_checkpoint(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train(tiny_config, run, "training.max_steps=20")[0] == 0
    weights = run / "checkpoints" / "step_20" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    code, err = invoke(
        "eval", "-c", str(tiny_config), "--checkpoint", str(run / "checkpoints" / "step_20")
    )
    assert code == 2 and "model.safetensors" in err

    # auto-resume skips the damaged newest checkpoint and continues from the previous one
    code, err = invoke(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(run),
        "--resume",
        "auto",
        "--set",
        "training.max_steps=12",
    )
    assert code == 0, err


def test_resume_path_that_is_not_a_checkpoint(tiny_config: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, err = invoke("train", "-c", str(tiny_config), "--resume", str(tmp_path / "empty"))
    assert code == 2 and "no complete checkpoint" in err
    code, err = invoke("generate", "--checkpoint", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere" in err


def test_binary_config_file_is_one_message(tmp_path: Path) -> None:
    config = tmp_path / "exp.yaml"
    config.write_bytes(bytes(range(256)) * 4)
    code, err = invoke("config", "validate", "-c", str(config))
    assert code == 2
    assert f"{config}: not a text config file" in err
    assert err.count("Error:") == 1 and "Traceback" not in err


def test_set_paths_mean_the_working_directory_not_the_config_folder(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config lives in exp/ and names a corpus there that does not exist; the user runs
    from the folder that holds the corpus and types its name."""
    exp = tmp_path / "exp"
    exp.mkdir()
    config = exp / "tiny.yaml"
    config.write_text(tiny_config.read_text().replace("corpus.txt", "nowhere.txt"))
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "corpus.txt").rename(work / "corpus.txt")
    monkeypatch.chdir(work)

    code, err = train(config, tmp_path / "run", "data.path=corpus.txt", "training.max_steps=2")

    assert code == 0, err
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert f"path: {work / 'corpus.txt'}" in saved
    code, err = train(config, tmp_path / "other", "training.max_steps=2")
    assert code == 2 and str(exp / "nowhere.txt") in err  # the file's own path: its folder


def test_divergence_names_the_last_checkpoint_or_says_there_is_none(
    tiny_config: Path, tmp_path: Path
) -> None:
    huge = ("optimization.lr=1.0e30", "optimization.warmup_steps=0")
    run = tmp_path / "run"
    code, err = train(tiny_config, run, *huge)
    assert code == 1
    assert "Error: training diverged: loss is nan at step 2" in err
    assert "no checkpoint was saved yet" in err and "is intact" not in err
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())

    good = tmp_path / "good"
    assert train(tiny_config, good, "training.max_steps=10")[0] == 0
    code, err = invoke(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(good),
        "--resume",
        "auto",
        *[arg for value in huge for arg in ("--set", value)],
    )
    assert code == 1
    assert f"the last checkpoint, {good / 'checkpoints' / 'step_10'}, is intact" in err


@pytest.mark.parametrize(
    ("override", "tensor"),
    [
        ("model.block_size=1000000000", "pos.wpe.weight"),
        ("model.vocab_size=1000000000", "wte.weight"),
    ],
)
def test_a_model_too_large_for_this_machine_is_refused_before_allocating(
    tiny_config: Path, tmp_path: Path, override: str, tensor: str
) -> None:
    run = tmp_path / "run"
    code, err = train(tiny_config, run, override)
    assert code == 2, err
    assert "parameters and needs at least" in err and tensor in err
    assert "model.block_size" in err and "model.vocab_size" in err
    assert not run.exists()
