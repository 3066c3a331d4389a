"""`neat generate` and `neat eval` on tiny trained checkpoints: sampling settings, streaming,
and the mistakes that must end in one message rather than a traceback or garbage."""

from __future__ import annotations

import math
import os
import selectors
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.evaluation.generation import MAX_NEW_TOKENS
from neat.inference import generate_text, load_for_inference, stream_text
from neat.interfaces import TrainState
from neat.persistence import Checkpointer, read_checkpoint_meta, resolve_checkpoint

SHAKESPEARE = Path(__file__).resolve().parents[2] / "examples" / "data" / "tinyshakespeare.txt"

CONFIG = """\
name: gen
model: {{type: gpt, n_layer: 1, n_head: 2, n_embd: 32, block_size: 32, dropout: 0.0}}
data: {{type: text, path: {corpus}, tokenizer: {{type: {tokenizer}}}, val_fraction: 0.1}}
optimization: {{lr: 1.0e-3, min_lr: 1.0e-4, warmup_steps: 2, decay_steps: 10}}
training: {{max_steps: 5, batch_size: 4, seed: 7, device: cpu}}
evaluation: {{interval: 5, batches: 1}}
monitoring: {{log_interval: 5}}
checkpoint: {{interval: 5, keep_last: 1}}
"""


def invoke(*args: str) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout_bytes, result.stderr


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A char run on Shakespeare and a byte run on text full of 2-, 3- and 4-byte characters."""
    root = tmp_path_factory.mktemp("generate")
    text = SHAKESPEARE.read_text(encoding="utf-8")[:20_000]
    (root / "plain.txt").write_text(text, encoding="utf-8")
    multi = text.replace("e", "é").replace("o", "ö€").replace("a", "😀")
    (root / "multi.txt").write_text(multi, encoding="utf-8")
    for name, corpus, tokenizer in [("char", "plain.txt", "char"), ("byte", "multi.txt", "byte")]:
        config = root / f"{name}.yaml"
        config.write_text(CONFIG.format(corpus=corpus, tokenizer=tokenizer), encoding="utf-8")
        code, _, err = invoke("train", "-c", str(config), "--run-dir", str(root / name))
        assert code == 0, err
    return root


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--top-p", "nan"], "--top-p"),
        (["--top-p", "1.5"], "--top-p"),
        (["--top-p", "-0.1"], "--top-p"),
        (["--temperature", "nan"], "--temperature"),
        (["--temperature", "inf"], "--temperature"),
        (["--temperature", "-1"], "--temperature"),
        (["--top-k", "0"], "--top-k"),
        (["--max-new-tokens", str(10**12)], "--max-new-tokens"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**63)], "--seed"),
        (["--seed", str(2**64)], "--seed"),
        (["--device", "nonsense"], "--device"),
        (["--device", "meta"], "--device"),
    ],
)
def test_generate_refuses_settings_that_mean_nothing(
    tmp_path: Path, args: list[str], option: str
) -> None:
    # refused before any checkpoint is read: this path does not even exist
    code, out, err = invoke("generate", "--checkpoint", str(tmp_path / "run"), *args)
    assert code == 2 and out == b""
    assert err.count("Error:") == 1 and option in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_generate_refuses_a_device_that_is_not_there(root: Path) -> None:
    for device in ["cuda", "cuda:1"]:
        code, out, err = invoke("generate", "--checkpoint", str(root / "char"), "--device", device)
        assert code == 2 and out == b"" and "--device" in err and "CUDA is not available" in err


def test_max_new_tokens_cap_is_in_the_help() -> None:
    code, out, _ = invoke("generate", "--help")
    assert code == 0 and f"{MAX_NEW_TOKENS:,}" in out.decode()


def test_top_p_zero_and_top_k_one_give_the_greedy_text(root: Path) -> None:
    common = ["generate", "--checkpoint", str(root / "char"), "--max-new-tokens", "30"]
    greedy = invoke(*common, "--temperature", "0")
    assert greedy[0] == 0, greedy[2]
    for args in [["--top-p", "0"], ["--top-k", "1"]]:
        for seed in ["1"]:
            assert invoke(*common, "--temperature", "1.5", "--seed", seed, *args) == greedy
    sampled = invoke(*common, "--temperature", "1.5", "--top-p", "0.9", "--seed", "1")
    assert sampled[0] == 0 and sampled[1] != greedy[1]


@pytest.mark.parametrize("run", ["char", "byte"])
def test_streamed_output_equals_the_non_streaming_text(root: Path, run: str) -> None:
    settings = {"max_new_tokens": 60, "temperature": 1.0, "seed": 5}
    prompt = "ROMEO:" if run == "char" else "Römeö € 😀:"
    whole = generate_text(root / run, prompt, device="cpu", **settings)  # type: ignore[arg-type]
    code, out, err = invoke(
        "generate",
        "--checkpoint",
        str(root / run),
        "--prompt",
        prompt,
        "--max-new-tokens",
        "60",
        "--temperature",
        "1.0",
        "--seed",
        "5",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert out == (whole + "\n").encode("utf-8")
    pieces = list(stream_text(root / run, prompt, device="cpu", **settings))  # type: ignore[arg-type]
    assert "".join(pieces) == whole and pieces[0] == prompt
    if run == "byte":  # the model emits multi-byte characters, and none arrives cut in two
        assert any(ord(c) > 127 and c != "\ufffd" for c in whole[len(prompt) :])


def test_stream_text_yields_long_before_generation_ends(root: Path) -> None:
    # a million tokens would take many minutes; the first pieces arrive at once
    pieces = stream_text(root / "char", "ROMEO:", max_new_tokens=MAX_NEW_TOKENS, device="cpu")
    assert next(pieces) == "ROMEO:"
    assert len(next(pieces)) >= 1
    pieces.close()


def test_cli_prints_tokens_as_they_are_produced(root: Path, tmp_path: Path) -> None:
    """Through a pipe, as `neat generate ... | head` sees it: text arrives while a million
    tokens are still due, and when the reader closes the pipe generate stops quietly."""
    args = ["generate", "--checkpoint", str(root / "char"), "--prompt", "ROMEO:"]
    with (tmp_path / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "neat", *args, "--max-new-tokens", str(MAX_NEW_TOKENS)],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    assert proc.stdout is not None
    received = b""
    deadline = time.monotonic() + 120
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while len(received) < len("ROMEO:") + 10 and time.monotonic() < deadline:
                if selector.select(timeout=1):
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    assert chunk, "generate exited before printing"
                    received += chunk
        proc.stdout.close()
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert received.startswith(b"ROMEO:") and len(received) >= len("ROMEO:") + 10
    err = (tmp_path / "stderr").read_text()
    assert code == 141 and "Traceback" not in err and "Exception ignored" not in err, err


def test_empty_prompt(root: Path) -> None:
    # byte has an end-of-text token to start from; char has none, and says so
    code, out, err = invoke(
        "generate", "--checkpoint", str(root / "byte"), "--prompt", "", "--max-new-tokens", "8"
    )
    assert code == 0, err
    code, out, err = invoke("generate", "--checkpoint", str(root / "char"), "--prompt", "")
    assert code == 2 and out == b""
    assert err.count("Error:") == 1 and "prompt (--prompt) is empty" in err and "end-of-text" in err


@pytest.fixture(scope="module")
def nan_run(root: Path) -> tuple[Path, str]:
    """The char run with one tensor set to NaN, saved by the checkpointer (hashes agree)."""
    source = resolve_checkpoint(root / "char")
    model, _, _ = load_for_inference(source, "cpu")
    name, param = list(model.named_parameters())[-1]
    with torch.no_grad():
        param.fill_(math.nan)
    run = root / "nan"
    meta = read_checkpoint_meta(source)
    extra = {}
    for file in ["tokenizer.json", "config.yaml"]:
        shutil.copy(source / file, root / f"nan-{file}")
        extra[file] = root / f"nan-{file}"
    Checkpointer(run / "checkpoints", metadata=meta["config"]).save(
        TrainState(step=5), model, None, extra
    )
    return run, name


def test_eval_and_generate_refuse_a_checkpoint_with_nan_weights(
    root: Path, nan_run: tuple[Path, str]
) -> None:
    run, tensor = nan_run
    checkpoint = str(run / "checkpoints" / "step_5")
    for args in [
        ["eval", "-c", str(root / "char.yaml"), "--checkpoint", str(run)],
        ["generate", "--checkpoint", str(run), "--max-new-tokens", "5"],
    ]:
        code, out, err = invoke(*args)
        assert code == 2 and out == b"", err
        assert err.count("Error:") == 1 and "Traceback" not in err
        assert tensor in err and checkpoint in err and "NaN" in err


def test_eval_and_generate_on_a_run_without_a_checkpoint(root: Path, tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    for args in [
        ["eval", "-c", str(root / "char.yaml"), "--checkpoint", str(tmp_path / "run")],
        ["generate", "--checkpoint", str(tmp_path / "run")],
    ]:
        code, out, err = invoke(*args)
        assert code == 2 and out == b""
        assert err.count("Error:") == 1 and "no complete checkpoint" in err
