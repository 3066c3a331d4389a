"""The Hyena operator (Poli et al., "Hyena Hierarchy", ICML 2023, arXiv 2302.10866): an
attention-free causal sequence mixer built from long convolutions with implicitly
parametrised filters and element-wise gates, O(L log L) in the sequence length.

It fills the `hyena` entry of the attention table in `neat.models.blocks`, so it does not
import that module; it reads the few block fields it needs through `MixerSettings`.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import nn

from neat.config import StrictModel

# Exponential-decay window rates (paper eq. 7): filters decay to `_DECAY_TARGET` of their
# start within 30%..150% of l_max, one fixed rate per channel (HazyResearch/safari's
# defaults, where the rates are not trained).
_DECAY_TARGET = 1e-2
_FAST_DECAY = 0.3
_SLOW_DECAY = 1.5


class HyenaConfig(StrictModel):
    """`model.hyena`: the operator's shape. Defaults are the paper's language-model settings
    (Table A.4 and safari's Pile config); CPU-sized models want a smaller filter FFN."""

    order: int = Field(
        default=2, description="N: N+1 projections, N-1 long convolutions (safari's counting)"
    )
    filter_order: PositiveInt = Field(default=64, description="width of the filter FFN")
    filter_depth: int = Field(default=4, description="linear layers in the filter FFN")
    emb_dim: int = Field(
        default=33, description="positional features 2K+1: t, Re and Im of K frequencies"
    )
    sine_freq: float = Field(default=14.0, description="initial frequency of the sine FFN")
    short_filter: PositiveInt = Field(default=3, description="causal depthwise conv kernel")
    modulate: bool = Field(default=True, description="multiply filters by a decay window")

    @field_validator("order")
    @classmethod
    def _order_at_least_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(
                f"model.hyena.order must be >= 2 (got {value}): order N has N-1 long "
                "convolutions, so order 2 (the paper's) is the smallest"
            )
        return value

    @field_validator("filter_depth")
    @classmethod
    def _depth_at_least_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError(
                f"model.hyena.filter_depth must be >= 2 (got {value}): the filter FFN needs "
                "an input and an output layer; the paper uses 4"
            )
        return value

    @field_validator("emb_dim")
    @classmethod
    def _emb_dim_odd(cls, value: int) -> int:
        if value < 3 or value % 2 == 0:
            raise ValueError(
                f"model.hyena.emb_dim must be odd and >= 3 (got {value}): it is 2K+1 "
                "(t, then the real and imaginary parts of K frequencies); use e.g. 3, 5 or 33"
            )
        return value

    @field_validator("sine_freq")
    @classmethod
    def _positive_freq(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(
                f"model.hyena.sine_freq must be > 0 (got {value}); the paper uses 10 to 14"
            )
        return value


class MixerSettings(Protocol):
    """The block fields a sequence mixer reads (`TransformerConfig` provides them)."""

    @property
    def block_size(self) -> int: ...

    @property
    def dropout(self) -> float: ...

    @property
    def bias(self) -> bool: ...

    @property
    def hyena(self) -> HyenaConfig: ...


def fft_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal (linear) convolution `y_t = sum_{s<=t} h_s u_{t-s}` along the last axis by FFT.

    `u` is (..., C, L), `h` is (C, L). Zero-padding to 2L makes the FFT's circular
    convolution a linear one, so nothing from the end of the sequence wraps around to its
    start (Poli et al. 2023, Prop. 3.1). Runs in float32 at least, autocast or not: half
    precision FFTs lose the long filter's tail and need power-of-two sizes on CUDA.
    """
    seq_len = u.shape[-1]
    dtype = torch.promote_types(torch.promote_types(u.dtype, h.dtype), torch.float32)
    n = 2 * seq_len
    u_f = torch.fft.rfft(u.to(dtype), n=n)
    h_f = torch.fft.rfft(h.to(dtype), n=n)
    y: torch.Tensor = torch.fft.irfft(u_f * h_f, n=n)[..., :seq_len]
    return y


class Sine(nn.Module):
    """sin(w * x) with a trainable frequency per feature: the implicit filter's activation,
    which lets a small FFN represent high-frequency filters (paper §3.3)."""

    def __init__(self, width: int, freq: float) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.full((width,), freq))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """Long filters h_t = Window(t) * FFN(PE(t)) (paper eq. 7), evaluated at t = 0..L-1.

    PE(t) = [t, Re e^{i2πkt/l_max}, Im e^{i2πkt/l_max}] for k = 1..K, with t normalised by
    l_max rather than L: a shorter input then sees a prefix of the l_max filter, so outputs
    do not depend on how far the sequence goes. The features and decay rates are fixed
    functions of the config, computed on the fly, so the parameter count does not grow
    with l_max. (The k = 0 band is a constant the first layer's bias already provides.)
    """

    def __init__(self, channels: int, l_max: int, cfg: HyenaConfig) -> None:
        super().__init__()
        self.l_max = l_max
        self.bands = (cfg.emb_dim - 1) // 2
        self.modulate = cfg.modulate
        width = cfg.filter_order
        layers: list[nn.Module] = [nn.Linear(cfg.emb_dim, width), Sine(width, cfg.sine_freq)]
        for _ in range(cfg.filter_depth - 2):
            layers += [nn.Linear(width, width), Sine(width, cfg.sine_freq)]
        layers.append(nn.Linear(width, channels, bias=False))
        self.ffn = nn.Sequential(*layers)
        # The filters are a smooth function of position; decaying their weights shrinks the
        # filters themselves (HazyResearch/safari trains them without weight decay).
        for param in self.ffn.parameters():
            param.no_weight_decay = True  # type: ignore[attr-defined]
        self.channels = channels

    def positional_features(
        self, seq_len: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """(L, emb_dim): normalised time, then cos and sin of K frequencies."""
        t = torch.arange(seq_len, dtype=dtype, device=device) / self.l_max
        k = torch.arange(1, self.bands + 1, dtype=dtype, device=device)
        angle = 2 * math.pi * t[:, None] * k[None, :]
        return torch.cat([t[:, None], torch.cos(angle), -torch.sin(angle)], dim=-1)

    def forward(self, seq_len: int) -> torch.Tensor:
        """The filters as (channels, L)."""
        weight = self.ffn[0].weight
        assert isinstance(weight, torch.Tensor)
        z = self.positional_features(seq_len, weight.dtype, weight.device)
        h: torch.Tensor = self.ffn(z)  # (L, C)
        if self.modulate:
            t = z[:, :1]
            fast, slow = (
                math.log(_DECAY_TARGET) / _FAST_DECAY,
                math.log(_DECAY_TARGET) / _SLOW_DECAY,
            )
            rates = torch.linspace(
                abs(slow), abs(fast), self.channels, dtype=h.dtype, device=h.device
            )
            h = h * torch.exp(-t * rates[None, :])
        return h.transpose(0, 1)


class HyenaOperator(nn.Module):
    """Order-N Hyena (Poli et al. 2023, Def. 3.1) in HazyResearch/safari's convention, which
    the reported models use: N+1 projections x_0..x_{N-1}, v, each through a causal short
    depthwise conv; then for each of the N-1 long filters h, v <- h * (x_i ⊙ v) + D ⊙ (x_i ⊙ v)
    (x_{N-1} first); finally y = out_proj(x_0 ⊙ v). Order 2: y = x_0 ⊙ (h * (x_1 ⊙ v)) + skip.

    A drop-in causal (B, L, D) -> (B, L, D) mixer with L <= `cfg.block_size`; `n_head` is
    accepted for the table's signature and unused (the operator is not multi-headed).
    The output projection is named `c_proj` so GPT-2 init scales it as a residual branch.
    """

    def __init__(self, dim: int, n_head: int, cfg: MixerSettings) -> None:
        super().__init__()
        hc = cfg.hyena
        self.dim = dim
        self.order = hc.order
        self.l_max = cfg.block_size
        width = (hc.order + 1) * dim
        self.in_proj = nn.Linear(dim, width, bias=cfg.bias)
        self.short_conv = nn.Conv1d(
            width, width, hc.short_filter, groups=width, padding=hc.short_filter - 1
        )
        self.filter = ImplicitFilter((hc.order - 1) * dim, cfg.block_size, hc)
        # D of y = h * u + D u: a per-channel skip around each long convolution.
        self.skip = nn.Parameter(torch.randn((hc.order - 1) * dim))
        self.c_proj = nn.Linear(dim, dim, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x_btd: torch.Tensor) -> torch.Tensor:
        _, seq_len, d = x_btd.shape
        if seq_len > self.l_max:
            raise ValueError(
                f"Hyena input length {seq_len} exceeds model.block_size {self.l_max}: the "
                "implicit filters are defined up to block_size; raise it or crop the input"
            )
        u = self.in_proj(x_btd).transpose(1, 2)  # (B, (N+1)D, L)
        u = self.short_conv(u)[..., :seq_len]  # padding k-1 on both sides; keep the causal part
        *gates, v = u.split(d, dim=1)
        with torch.autocast(device_type=x_btd.device.type, enabled=False):
            # Filters, FFTs and gates in the parameters' precision (float32 under autocast).
            h = self.filter(seq_len).reshape(self.order - 1, d, seq_len)
            skip = self.skip.view(self.order - 1, d, 1)
            for i, gate in enumerate(reversed(gates[1:])):
                s = gate * v
                v = fft_causal_conv(s, h[i]) + skip[i] * s
            y = (gates[0] * v).transpose(1, 2)
        out: torch.Tensor = self.dropout(self.c_proj(y))
        return out


def hyena_flops_per_token(dim: int, seq_len: int, cfg: HyenaConfig) -> float:
    """Training FLOPs per token of one operator beyond its weights' 6N (which GPT's
    `flops_per_token` already counts): the N-1 FFT convolutions of size 2L (≈2.5 n log2 n
    real FLOPs per real FFT of size n; one forward and one inverse per channel and sequence,
    the filter's transform shared by the batch and left out), the spectral products and the
    gates. Forward + backward ≈ 3x forward, as in 6N (Kaplan et al. 2020)."""
    n = 2 * seq_len
    fft_pair = 2 * 2.5 * n * math.log2(n) / seq_len  # rfft(u) + irfft, per token
    spectral = 6.0 * (n // 2 + 1) / seq_len  # complex multiply per frequency
    gates = 3.0  # x_i ⊙ v, D ⊙ s and its sum, per long conv
    per_conv = fft_pair + spectral + gates
    forward = dim * ((cfg.order - 1) * per_conv + 1.0)  # + 1: the last gate x_0
    return 3.0 * forward
