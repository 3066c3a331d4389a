"""`training.float8`: which linear layers torchao would convert, and one clear error for
each thing a run lacks (checked here without torchao or a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.errors import ConfigError
from neat.models import GPT
from neat.models.gpt import GPTConfig
from neat.training import float8
from neat.training.float8 import convert_to_float8, float8_filter

CUDA = torch.device("cuda", 0)
NO_CUDA = (
    "training.float8 needs a CUDA GPU with compute capability 8.9 or newer (H100, L4, "
    "RTX 4090); this run is on cpu"
)


def converted(model: torch.nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if float8_filter(module, name)}


def cuda_with(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")


def test_the_blocks_linears_are_converted_and_the_head_is_not() -> None:
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=8), vocab_size=64)
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert converted(model) == linears - {"lm_head"} and len(linears) == 9


def test_layers_whose_dims_are_not_multiples_of_16_stay() -> None:
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=8, mlp="relu2", mlp_hidden=40)
    model = GPT(cfg, vocab_size=64)
    kept = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    mlp = {n for n in kept if ".mlp." in n}
    assert mlp and not converted(model) & mlp  # 32 -> 40 and 40 -> 32
    assert converted(model) == kept - mlp - {"lm_head"}
    assert not converted(GPT(GPTConfig(n_embd=24, n_head=2, n_layer=1), vocab_size=64))


def test_torchao_gets_the_model_and_the_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda_with(monkeypatch, (9, 0))
    calls: list[tuple[torch.nn.Module, object]] = []

    def convert(model: torch.nn.Module, *, module_filter_fn: object) -> torch.nn.Module:
        calls.append((model, module_filter_fn))
        return model

    torchao = SimpleNamespace(convert_to_float8_training=convert)
    monkeypatch.setattr(float8, "_torchao_float8", lambda: torchao)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=8), vocab_size=64)
    assert convert_to_float8(model, CUDA, compiled=False) is model
    assert calls == [(model, float8_filter)]


def test_no_layer_to_convert_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda_with(monkeypatch, (9, 0))
    monkeypatch.setattr(float8, "_torchao_float8", object)  # torchao, as if installed
    model = GPT(GPTConfig(n_embd=24, n_head=2, n_layer=1), vocab_size=64)
    with pytest.raises(ConfigError, match="no linear layer to convert"):
        convert_to_float8(model, CUDA, compiled=True)


def test_the_errors_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=8), vocab_size=64)
    with pytest.raises(ConfigError) as cpu:
        convert_to_float8(model, torch.device("cpu"), compiled=True)
    assert str(cpu.value) == NO_CUDA
    cuda_with(monkeypatch, (8, 0))
    with pytest.raises(ConfigError, match=r"NVIDIA A100 has compute capability 8\.0"):
        convert_to_float8(model, CUDA, compiled=True)
    cuda_with(monkeypatch, (9, 0))
    for name in ("torchao", "torchao.float8"):  # None: import fails, as if not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match="pip install torchao"):
        convert_to_float8(model, CUDA, compiled=True)


def test_a_float8_run_on_cpu_fails_at_build_time(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "-c", str(tiny_config), "--run-dir", str(run), "--set", "training.float8=true"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert NO_CUDA in " ".join(result.output.split())
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()
