"""The Hyena operator: exact FFT convolution, causality (with a circular-FFT negative control),
prefix consistency, sublinear parameters, the drop-in shape contract, and that it learns."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from neat.config import build, load_config
from neat.interfaces.contexts import ModelContext
from neat.models import hyena
from neat.models.hyena import HyenaConfig, HyenaOperator, fft_causal_conv, hyena_flops_per_token

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL = HyenaConfig(filter_order=16, emb_dim=5, sine_freq=10.0)


@dataclass(frozen=True)
class Settings:
    """The block fields the operator reads (TransformerConfig in the model)."""

    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    hyena: HyenaConfig = field(default_factory=lambda: SMALL)


def _operator(dim: int = 16, l_max: int = 64, cfg: HyenaConfig = SMALL) -> HyenaOperator:
    torch.manual_seed(0)
    return HyenaOperator(dim, 4, Settings(block_size=l_max, hyena=cfg)).double().eval()


def _direct_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """y_t = sum_{s<=t} h_s u_{t-s}, the O(L^2) definition."""
    seq_len = u.shape[-1]
    lag = torch.arange(seq_len)[:, None] - torch.arange(seq_len)[None, :]  # t - s
    toeplitz = torch.where(lag >= 0, h[:, lag.clamp(min=0)], 0.0)  # (C, L, L), lower triangular
    return torch.einsum("cts,...cs->...ct", toeplitz, u)


@contextmanager
def _circular_fft() -> Iterator[None]:
    """Swap in an FFT of size L (no padding): a circular convolution that wraps around."""

    def circular(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        n = u.shape[-1]
        y: torch.Tensor = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(h, n=n), n=n)
        return y

    original = hyena.fft_causal_conv
    hyena.fft_causal_conv = circular
    try:
        yield
    finally:
        hyena.fft_causal_conv = original


def _future_leak(op: nn.Module, seq_len: int = 48, t: int = 20) -> float:
    """Largest change of outputs at positions <= t when inputs after t change."""
    torch.manual_seed(1)
    x = torch.randn(2, seq_len, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[:, t + 1 :] += torch.randn_like(x2[:, t + 1 :])
    with torch.no_grad():
        return float((op(x)[:, : t + 1] - op(x2)[:, : t + 1]).abs().max())


def test_fft_causal_conv_equals_direct_convolution() -> None:
    torch.manual_seed(0)
    u = torch.randn(2, 3, 37, dtype=torch.float64)
    h = torch.randn(3, 37, dtype=torch.float64)
    torch.testing.assert_close(fft_causal_conv(u, h), _direct_causal_conv(u, h), atol=1e-10, rtol=0)


def test_fft_causal_conv_runs_in_float32_for_half_inputs() -> None:
    u = torch.randn(1, 2, 8).to(torch.bfloat16)
    assert fft_causal_conv(u, torch.randn(2, 8)).dtype == torch.float32


def test_operator_is_causal_and_a_circular_fft_is_caught() -> None:
    op = _operator()
    assert _future_leak(op) < 1e-12
    with _circular_fft():
        assert _future_leak(op) > 1e-4  # the negative control: the wrap-around leak is seen


def test_no_gradient_flows_from_the_past_to_the_future() -> None:
    op = _operator()
    x = torch.randn(1, 32, 16, dtype=torch.float64, requires_grad=True)
    op(x)[0, 10].sum().backward()
    assert x.grad is not None
    assert float(x.grad[0, 11:].abs().max()) < 1e-14
    assert float(x.grad[0, :11].abs().max()) > 1e-6


def test_prefix_consistency() -> None:
    op = _operator()
    x = torch.randn(2, 64, 16, dtype=torch.float64)
    with torch.no_grad():
        full = op(x)
        for t in (1, 7, 33):
            torch.testing.assert_close(op(x[:, :t]), full[:, :t], atol=1e-12, rtol=0)


def test_parameter_count_does_not_depend_on_l_max() -> None:
    counts = {sum(p.numel() for p in _operator(l_max=n).parameters()) for n in (16, 256, 4096)}
    assert len(counts) == 1


@pytest.mark.parametrize("order", [2, 3])
def test_shape_contract_and_length_limit(order: int) -> None:
    op = _operator(dim=24, cfg=SMALL.model_copy(update={"order": order}))
    x = torch.randn(3, 64, 24, dtype=torch.float64)
    assert op(x).shape == (3, 64, 24)
    assert _future_leak(_operator(cfg=SMALL.model_copy(update={"order": order}))) < 1e-12
    with pytest.raises(ValueError, match=r"block_size 64"):
        op(torch.randn(1, 65, 24, dtype=torch.float64))


def test_config_errors_name_the_key() -> None:
    for bad, key in (
        ({"emb_dim": 4}, "emb_dim"),
        ({"emb_dim": 1}, "emb_dim"),
        ({"order": 1}, "order"),
        ({"filter_depth": 1}, "filter_depth"),
        ({"sine_freq": 0.0}, "sine_freq"),
        ({"filter_orderr": 8}, "filter_orderr"),
    ):
        with pytest.raises(ValidationError, match=key):
            HyenaConfig.model_validate(bad)


def test_flops_grow_like_log_l() -> None:
    short, long = (hyena_flops_per_token(64, n, SMALL) for n in (1024, 1024 * 1024))
    assert 1.5 < long / short < 2.5  # log2(2L): 11 -> 21


def test_a_small_hyena_stack_learns() -> None:
    """Next-token prediction of a periodic sequence: the loss falls within a few steps."""
    torch.manual_seed(0)
    vocab, dim = 8, 16
    model = nn.Sequential(
        nn.Embedding(vocab, dim),
        HyenaOperator(dim, 1, Settings(block_size=32)),
        nn.Linear(dim, vocab),
    )
    seq = torch.arange(33).remainder(5).repeat(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        logits = model(seq[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), seq[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_operator_under_bf16_autocast_keeps_the_convolution_in_float32() -> None:
    torch.manual_seed(0)
    op = HyenaOperator(16, 4, Settings(block_size=32))
    x = torch.randn(2, 32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = op(x)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    torch.testing.assert_close(y.float(), op(x), atol=0.05, rtol=0.05)


def test_the_hyena_example_matches_the_gpt_example_in_size() -> None:
    models = [
        build("model", load_config(EXAMPLES / name).model, ModelContext(65))
        for name in ("hyena_char_cpu.yaml", "shakespeare_char_cpu.yaml")
    ]
    assert all(isinstance(b.attn, HyenaOperator) for b in models[0].blocks)
    hyena_params, gpt_params = (m.num_params() for m in models)
    assert abs(hyena_params / gpt_params - 1) < 0.05


def test_the_implicit_filters_are_not_weight_decayed() -> None:
    from neat.models.gpt import GPT, GPTConfig
    from neat.optimization.adamw import param_groups

    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, attention="hyena"), 11)
    decay, no_decay = (group["params"] for group in param_groups(model, 0.1))
    filters = {id(p) for name, p in model.named_parameters() if ".filter.ffn." in name}
    assert filters and filters <= {id(p) for p in no_decay}
    assert any(p.dim() >= 2 for p in decay)
    assert not filters & {id(p) for p in decay}
