"""`training.fused_loss`: the chunked head + cross-entropy equals the plain one, in loss and
gradients, keeps no logits for the backward, and trains a real model the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from neat.cli import cli
from neat.errors import ConfigError
from neat.models import GPT
from neat.models.fused_loss import enable_fused_loss, fused_linear_cross_entropy
from neat.models.gpt import GPTConfig

ROWS, DIM, VOCAB, CHUNK = 37, 16, 50, 8  # the chunk does not divide the rows


def inputs(
    bias: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(ROWS, DIM, generator=g, requires_grad=True)
    w = torch.randn(VOCAB, DIM, generator=g, requires_grad=True)
    b = torch.randn(VOCAB, generator=g, requires_grad=True) if bias else None
    targets = torch.randint(0, VOCAB, (ROWS,), generator=g)
    targets[[0, 5, 17, 36]] = -100  # ignored, in several chunks
    return h, w, b, targets


def grads(loss: torch.Tensor, *tensors: torch.Tensor | None) -> list[torch.Tensor]:
    present = [t for t in tensors if t is not None]
    return list(torch.autograd.grad(loss * 3.0, present))  # a scale, like 1/accumulation


@pytest.mark.parametrize("bias", [False, True])
def test_loss_and_gradients_equal_the_plain_head(bias: bool) -> None:
    h, w, b, targets = inputs(bias)
    plain = F.cross_entropy(F.linear(h, w, b), targets, ignore_index=-100)
    fused = fused_linear_cross_entropy(h, w, targets, bias=b, chunk=CHUNK)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-5)
    fused_grads = grads(fused, h, w, b)
    for got, want in zip(fused_grads, grads(plain, h, w, b), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert fused_grads[0][[0, 5, 17, 36]].abs().max() == 0  # ignored rows get none


def test_without_gradients_only_the_loss_is_computed() -> None:
    h, w, _, targets = inputs()
    plain = F.cross_entropy(h @ w.T, targets, ignore_index=-100)
    with torch.no_grad():
        fused = fused_linear_cross_entropy(h, w, targets, chunk=CHUNK)
    assert not fused.requires_grad
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-5)


def test_the_backward_keeps_no_logits() -> None:
    rows, dim, vocab = 64, 16, 500  # rows x vocab is far above both rows x dim and vocab x dim
    h = torch.randn(rows, dim, requires_grad=True)
    w = torch.randn(vocab, dim, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,))
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        torch.autograd.backward(fused_linear_cross_entropy(h, w, targets, chunk=16))
    assert saved and max(saved) <= vocab * dim
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        torch.autograd.backward(F.cross_entropy(h @ w.T, targets))
    assert max(saved) >= rows * vocab  # the plain head does keep them


def test_under_bf16_autocast_it_follows_the_plain_head() -> None:
    h, w, _, targets = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = F.cross_entropy(F.linear(h, w), targets, ignore_index=-100)
        fused = fused_linear_cross_entropy(h, w, targets, chunk=CHUNK)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, plain, rtol=0, atol=2e-2)
    got, want = grads(fused, h, w), grads(plain, h, w)
    assert [g.dtype for g in got] == [torch.float32, torch.float32]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0.05, atol=5e-3)


def test_gpt_returns_the_same_loss_and_no_logits() -> None:
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, pad_vocab_multiple=16)
    model = GPT(cfg, vocab_size=11)  # padded to 16 rows: the padding gets no gradient
    x = torch.randint(0, 11, (3, 8))
    y = torch.randint(0, 11, (3, 8))
    y[0, :3] = -100
    plain = model(x, y)
    enable_fused_loss(model, "gpt", chunk=5)
    fused = model(x, y)
    assert fused["logits"] is None and plain["logits"] is not None
    torch.testing.assert_close(fused["loss"], plain["loss"], rtol=0, atol=1e-5)
    fused["loss"].backward()
    assert model.lm_head.weight.grad is not None
    assert model.lm_head.weight.grad[11:].abs().max() == 0
    assert model(x)["logits"].shape == (3, 8, 11)  # without targets: logits as always


def test_a_model_without_support_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="model type 'other' does not support it"):
        enable_fused_loss(nn.Linear(2, 2), "other", 8)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8), vocab_size=11)
    model.lm_head = nn.Sequential(model.lm_head)  # type: ignore[assignment]  # an adapter
    with pytest.raises(ConfigError, match=r"leave lm_head out of finetune\.targets"):
        enable_fused_loss(model, "gpt", 8)


def _losses(config: Path, run: Path, *extra: str) -> list[float]:
    args = ["train", "-c", str(config), "--run-dir", str(run), "--set", "training.max_steps=5"]
    result = CliRunner().invoke(cli, [*args, *extra])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["event"] == "train"]


def test_a_real_run_trains_the_same_with_the_fused_loss(tiny_config: Path, tmp_path: Path) -> None:
    plain = _losses(tiny_config, tmp_path / "plain")
    # 4 rows x 32 positions = 128 per step, in chunks of 50
    fused = _losses(
        tiny_config,
        tmp_path / "fused",
        *("--set", "training.fused_loss=true", "--set", "training.fused_loss_chunk=50"),
    )
    assert len(plain) == 5
    assert fused == pytest.approx(plain, abs=1e-5, rel=0)
