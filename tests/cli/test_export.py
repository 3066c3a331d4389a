"""`neat export` on real tiny runs: the files run in ONNX Runtime and TorchScript and give the
PyTorch model's logits at shapes other than the export's; what cannot be exported says why."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import onnxruntime
import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.inference import load_for_inference

SHAKESPEARE = Path(__file__).resolve().parents[2] / "examples" / "data" / "tinyshakespeare.txt"

CONFIG = """\
name: tiny-{name}
model: {model}
data: {{type: text, path: corpus.txt, tokenizer: {{type: {tokenizer}}}, val_fraction: 0.1}}
optimization: {{lr: 1.0e-3, min_lr: 1.0e-4, warmup_steps: 2, decay_steps: 20}}
training: {{max_steps: 4, batch_size: 4, seed: 7, device: cpu, compile: false}}
evaluation: {{interval: 4, batches: 1}}
monitoring: {{log_interval: 4}}
checkpoint: {{interval: 4, keep_last: 1}}
"""
MODELS = {
    "gpt": "{type: gpt, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, dropout: 0.1}",
    "llama": "{type: gpt, n_layer: 2, n_head: 4, n_kv_head: 2, n_embd: 32, block_size: 32, "
    "bias: false, attention: gqa, position: rope, norm: rmsnorm, mlp: swiglu}",
    "titans": "{type: titans, variant: mac, n_layer: 1, n_head: 2, n_embd: 32, block_size: 32, "
    "segment: 16, memory: {chunk_size: 8}}",
    # static patching: the entropy model changes where patches start, not what stops export
    "blt": "{type: blt, block_size: 32, local_dim: 16, local_heads: 2, encoder_layers: 1, "
    "decoder_layers: 1, global_dim: 32, global_heads: 2, global_layers: 1, "
    "hash_ngram_sizes: [3], hash_buckets: 64}",
}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread: two spin-wait when other processes hold a core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 4-step run per model in MODELS, trained through the CLI."""
    root = tmp_path_factory.mktemp("export")
    (root / "corpus.txt").write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000])
    done = {}
    for name, model in MODELS.items():
        config = root / f"{name}.yaml"
        tokenizer = "byte" if name == "blt" else "char"
        config.write_text(CONFIG.format(name=name, model=model, tokenizer=tokenizer))
        code, _, err = invoke("train", "-c", str(config), "--run-dir", str(root / name))
        assert code == 0, err
        done[name] = root / name
    return done


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


def reference(run: Path, ids: torch.Tensor) -> torch.Tensor:
    model, _, _ = load_for_inference(run, "cpu")
    with torch.no_grad():
        logits: torch.Tensor = model.eval()(ids)["logits"]
    return logits


def random_ids(run: Path, *shapes: tuple[int, int]) -> list[torch.Tensor]:
    model, _, _ = load_for_inference(run, "cpu")
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, model.vocab_size, shape, generator=generator) for shape in shapes]


def onnx_logits(path: Path, ids: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["logits"], {"input_ids": ids.numpy()})
    return torch.from_numpy(out)


def test_gpt_exports_to_onnx_and_torchscript_with_dynamic_axes(runs: dict[str, Path]) -> None:
    run = runs["gpt"]
    code, out, err = invoke("export", "--checkpoint", str(run), "--format", "onnx")
    assert code == 0, err
    onnx_file = run / "export" / "model.onnx"
    assert f"exported {onnx_file}" in out and "KiB" in out
    assert "parity: max abs diff" in out and "(2, 32), (1, 16)" in out

    code, out, err = invoke("export", "--checkpoint", str(run), "--format", "torchscript")
    assert code == 0, err
    script = torch.jit.load(str(run / "export" / "model.pt"))
    for ids in random_ids(run, (3, 32), (1, 7)):  # neither shape was the export's
        expected = reference(run, ids)
        got = onnx_logits(onnx_file, ids)
        assert got.dtype == torch.float32 and got.shape == expected.shape
        assert (got - expected).abs().max() < 1e-4
        with torch.no_grad():
            assert (script(ids) - expected).abs().max() < 1e-4
    assert sorted(p.name for p in (run / "export").iterdir()) == ["model.onnx", "model.pt"]

    # a check that fails keeps the file a passing one wrote: ONNX Runtime is not bit-exact
    before = onnx_file.read_bytes()
    code, _, err = invoke(
        "export", "--checkpoint", str(run), "--format", "onnx", "--tolerance", "0"
    )
    assert code == 2 and "differ from the PyTorch model's by up to" in err
    assert "tolerance 0" in err and onnx_file.read_bytes() == before
    assert sorted(p.name for p in (run / "export").iterdir()) == ["model.onnx", "model.pt"]


def test_llama_shaped_gpt_at_a_chosen_shape(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["llama"]
    for fmt, name in [("onnx", "llama.onnx"), ("torchscript", "llama.pt")]:
        out_file = tmp_path / "out" / name
        args = ["--format", fmt, "--out", str(out_file), "--batch", "1", "--seq-len", "8"]
        code, out, err = invoke("export", "--checkpoint", str(run), *args)
        assert code == 0, err
        # the full context is checked too: RoPE's table must not be cut at the traced length
        assert "(1, 8), (2, 4), (1, 32)" in out and out_file.is_file()
    (long, short) = random_ids(run, (2, 32), (3, 5))
    for ids in (long, short):
        expected = reference(run, ids)
        assert (onnx_logits(tmp_path / "out" / "llama.onnx", ids) - expected).abs().max() < 1e-4
        script = torch.jit.load(str(tmp_path / "out" / "llama.pt"))
        with torch.no_grad():
            assert (script(ids) - expected).abs().max() < 1e-4


def test_what_cannot_be_exported_says_why_and_leaves_nothing(runs: dict[str, Path]) -> None:
    # Titans' mac blocks loop over the segments of the input: a trace fixes their number
    code, _, err = invoke("export", "--checkpoint", str(runs["titans"]), "--format", "torchscript")
    assert code == 2
    assert "model type 'titans'" in err and "fails at shape (1, 16)" in err
    assert "neat/models/titans" in err
    # BLT sizes its patch dimension from the data and checks shapes with a set of tuples
    code, _, err = invoke("export", "--checkpoint", str(runs["blt"]), "--format", "onnx")
    assert code == 2
    assert "model type 'blt' cannot be exported to onnx" in err
    assert "neat/models/blt/model.py" in err and "patch_starts" in err
    for name in ("titans", "blt"):
        assert not (runs[name] / "export").exists()
    assert len(err.strip().splitlines()) == 1


def test_bad_checkpoint_and_seq_len_exit_2(runs: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run"
    code, _, err = invoke("export", "--checkpoint", str(missing), "--format", "onnx")
    assert code == 2 and "does not exist" in err and not missing.exists()
    args = ["--format", "torchscript", "--seq-len", "33", "--out", str(tmp_path / "m.pt")]
    code, _, err = invoke("export", "--checkpoint", str(runs["gpt"]), *args)
    assert code == 2 and "block_size 32" in err and not (tmp_path / "m.pt").exists()


def test_onnx_without_the_export_extra_says_how_to_install_it(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what import sees when it is absent
    code, _, err = invoke("export", "--checkpoint", str(runs["gpt"]), "--format", "onnx")
    assert code == 2 and "onnxruntime" in err and "pip install 'neat[export]'" in err
