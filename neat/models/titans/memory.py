"""The neural long-term memory of Titans (Behrouz, Zhong & Mirrokni 2025, §3).

An MLP M, one copy per sequence, that the model writes by gradient descent while it reads:

    loss_t = ||M_{t-1}(k_t) - v_t||^2 / D               associative loss (eq. 12)
    S_t    = eta_t * S_{t-1} - theta_t * grad loss_t     surprise with momentum (eq. 13)
    M_t    = (1 - alpha_t) * M_{t-1} + S_t               forgetting (eq. 14)

and reads with y_t = M(q_t), no update (eq. 15). theta, eta and alpha come from the token
(sigmoids of one small projection). Training is parallel within a chunk of b tokens (§3.2):
every gradient of a chunk is taken at the chunk-start weights, so the recurrence over the
chunk collapses to fixed coefficients (products of the gates) times the per-token gradients,
and since each layer's gradient is an outer product (input x output-gradient), their weighted
sum is one matmul: no per-token gradient is ever materialised. The loss is the paper's squared
error averaged over the D features (as lucidrains/titans-pytorch does): summed, a chunk's step
grows with the width and the memory diverges at the default learning rate. Across chunks the state
carries, and every step is differentiable, so the outer loss trains W_K, W_V, W_Q, the gates
and the initial weights M_0 through the inner updates.

A chunk reads with the weights left by the chunks before it, then writes: strictly causal.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from neat.models.titans.config import MemoryConfig

__all__ = [
    "MemoryState",
    "NeuralMemory",
    "chunk_coefficients",
    "chunked_coefficients",
    "memory_forward",
]


class MemoryState(NamedTuple):
    """Per-sequence memory weights M and surprise S, one (B, in, out) tensor per layer."""

    weights: tuple[torch.Tensor, ...]
    momentum: tuple[torch.Tensor, ...]


def _gelu_grad(z: torch.Tensor) -> torch.Tensor:
    """d gelu(z) / dz for the exact (erf) GELU: Phi(z) + z * phi(z)."""
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return cdf + z * pdf


def memory_forward(
    weights: tuple[torch.Tensor, ...], x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """M(x) for batched weights: x (B, n, in) -> (B, n, out), with each layer's input and
    pre-activation (what the gradient needs). GELU between layers, none after the last."""
    inputs, pre = [], []
    h = x
    for i, w in enumerate(weights):
        inputs.append(h)
        z = torch.bmm(h, w)
        pre.append(z)
        h = F.gelu(z) if i < len(weights) - 1 else z
    return h, inputs, pre


def _products(g: torch.Tensor) -> torch.Tensor:
    """P[b, t, i] = prod_{j=i+1..t} g[b, j] for t >= i, else 0; g (B, n+1), g[:, 0] unused.

    A cumulative product down each column of a matrix holding 1 on and above the diagonal:
    no logarithms, so a gate of exactly 0 (no momentum) is exact."""
    n1 = g.shape[1]
    below = torch.ones(n1, n1, dtype=torch.bool, device=g.device).tril(-1)
    col = torch.where(below, g[:, :, None], torch.ones_like(g)[:, :, None])  # (B, t, i)
    return torch.cumprod(col, dim=1) * torch.ones_like(below, dtype=g.dtype).tril()


def chunk_coefficients(
    theta: torch.Tensor, eta: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coefficients of the chunk's recurrence unrolled from its start state (M_0, S_0):

        S_n = s0 * S_0 - sum_i s_i u_i
        M_n = m0 * M_0 + c * S_0 - sum_i w_i u_i

    with u_i the gradient of token i at M_0 (eq. 16-18 of the paper, with momentum).
    Gates are (B, n); returns m0, c, s0 (B,) and w, s (B, n)."""
    one = torch.ones_like(theta[:, :1])
    pe = _products(torch.cat([one, eta], dim=1))  # products of eta over (i, t]
    pa = _products(torch.cat([one, 1.0 - alpha], dim=1))  # products of (1 - alpha)
    last_a = pa[:, -1, 1:]  # (B, t=1..n): prod_{j=t+1..n} (1 - alpha_j)
    m0 = pa[:, -1, 0]
    c = (last_a * pe[:, 1:, 0]).sum(dim=1)
    w = theta * torch.einsum("bt,bti->bi", last_a, pe[:, 1:, 1:])
    s0 = pe[:, -1, 0]
    s = theta * pe[:, -1, 1:]
    return m0, c, s0, w, s


Coefficients = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def chunked_coefficients(
    theta: torch.Tensor, eta: torch.Tensor, alpha: torch.Tensor, chunk: int
) -> list[Coefficients]:
    """`chunk_coefficients` of every chunk of a (B, T) gate sequence, in as few calls as the
    chunking allows: the gates do not depend on the memory, so all full chunks are one
    batched call (B * T // chunk rows) and only a ragged tail is a second one. The chunk
    loop then holds nothing but the memory's matmuls (a step used to launch ~40k kernels)."""
    batch, length = theta.shape
    full = length // chunk
    out: list[Coefficients] = []
    if full:
        n = full * chunk
        flat = [g[:, :n].reshape(batch * full, chunk) for g in (theta, eta, alpha)]
        coeffs = chunk_coefficients(*flat)
        per = [c.reshape(batch, full, *c.shape[1:]).unbind(1) for c in coeffs]
        out.extend(zip(*per, strict=True))
    if length % chunk:
        tail = slice(full * chunk, length)
        out.append(chunk_coefficients(theta[:, tail], eta[:, tail], alpha[:, tail]))
    return out


def _clip_scale(step: torch.Tensor, max_norm: float | None) -> torch.Tensor | float:
    """Per-sequence factor that brings a (B, in, out) step to Frobenius norm <= max_norm.

    Gradient descent on a deep MLP diverges once the step outgrows the loss's curvature, and
    a chunk's step sums b gradients taken at one point: measured in passkey training (fp32
    and bf16 alike), a 2-layer memory's weights went from 0.6 to 3e7 within one sequence.
    Clipping the step bounds the growth to linear, as per-sample gradient clipping does in
    lucidrains/titans-pytorch (`max_grad_norm`)."""
    if max_norm is None:
        return 1.0
    norm = torch.linalg.vector_norm(step, dim=(1, 2)).clamp_min(1e-12)
    scale: torch.Tensor = (max_norm / norm).clamp(max=1.0)
    return scale[:, None, None]


def _chunk_update(
    state: MemoryState,
    k: torch.Tensor,
    v: torch.Tensor,
    coefficients: Coefficients,
    max_update_norm: float | None,
) -> MemoryState:
    """Write one chunk: gradients at the chunk-start weights, combined by the coefficients."""
    y, inputs, pre = memory_forward(state.weights, k)
    m0, c, s0, w, s = coefficients
    delta = (2.0 / y.shape[-1]) * (y - v)  # d mean((y - v)^2) / dy
    weights, momentum = [], []
    for layer in reversed(range(len(state.weights))):
        a = inputs[layer]
        sum_w = torch.bmm((a * w[..., None]).transpose(1, 2), delta)
        sum_s = torch.bmm((a * s[..., None]).transpose(1, 2), delta)
        scale = _clip_scale(sum_w, max_update_norm)
        sum_w, sum_s = sum_w * scale, sum_s * scale
        m, mom = state.weights[layer], state.momentum[layer]
        weights.append(m0[:, None, None] * m + c[:, None, None] * mom - sum_w)
        momentum.append(s0[:, None, None] * mom - sum_s)
        if layer:
            delta = torch.bmm(delta, m.transpose(1, 2)) * _gelu_grad(pre[layer - 1])
    return MemoryState(tuple(reversed(weights)), tuple(reversed(momentum)))


class NeuralMemory(nn.Module):
    """(B, T, D) -> (B, T, D) read from the memory, and the state after writing the input.

    q, k and v are SiLU projections with q and k l2-normalised (§4.4); the read goes
    through an RMSNorm and an output projection. `read` alone retrieves without writing."""

    def __init__(self, dim: int, cfg: MemoryConfig, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.chunk_size = cfg.chunk_size
        self.max_lr = cfg.max_lr
        # Heavy-ball momentum diverges as eta -> 1 (measured: theta at max_lr, eta -> 1 on a
        # repeated pattern gave NaN within 512 tokens), so eta is bounded below 1.
        self.max_momentum = cfg.max_momentum
        self.max_update_norm = cfg.max_update_norm
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        # theta, eta, alpha from one projection; biases start at lr max_lr/2, momentum 0.73
        # and forgetting 0.7% a token, so memory accumulates from the first step.
        self.to_gates = nn.Linear(dim, 3)
        self.reset_gates()
        hidden = cfg.expansion * dim
        sizes = [dim] + [hidden] * (cfg.depth - 1) + [dim]
        # M_0, the memory every sequence starts from: learned by the outer loop
        self.init_weights = nn.ParameterList(
            nn.Parameter(torch.randn(a, b) / math.sqrt(a)) for a, b in itertools.pairwise(sizes)
        )
        self.norm = nn.RMSNorm(dim, eps=norm_eps)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def reset_gates(self) -> None:
        nn.init.zeros_(self.to_gates.weight)
        with torch.no_grad():
            self.to_gates.bias.copy_(torch.tensor([0.0, 1.0, -5.0]))

    def initial_state(self, batch: int, dtype: torch.dtype) -> MemoryState:
        weights = tuple(w.to(dtype).expand(batch, *w.shape) for w in self.init_weights)
        return MemoryState(weights, tuple(torch.zeros_like(w) for w in weights))

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """theta (momentary lr), eta (surprise decay), alpha (forgetting), each (B, T)."""
        g = torch.sigmoid(self.to_gates(x))
        return self.max_lr * g[..., 0], self.max_momentum * g[..., 1], g[..., 2]

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.silu(self.to_q(x)), dim=-1)

    def _out(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.to_out(self.norm(y.to(like.dtype)))
        return out

    def read(self, x: torch.Tensor, state: MemoryState | None) -> torch.Tensor:
        """Retrieve with the state as it is (no write): eq. 15."""
        dtype = _state_dtype(x)
        state = state if state is not None else self.initial_state(x.shape[0], dtype)
        with torch.autocast(x.device.type, enabled=False):
            y, _, _ = memory_forward(state.weights, self._queries(x.to(dtype)))
        return self._out(y, x)

    def forward(
        self, x: torch.Tensor, state: MemoryState | None = None
    ) -> tuple[torch.Tensor, MemoryState]:
        dtype = _state_dtype(x)
        state = state if state is not None else self.initial_state(x.shape[0], dtype)
        # The inner loop runs in fp32 (fp64 in tests) even under autocast: its updates
        # compound over every chunk of a stream.
        with torch.autocast(x.device.type, enabled=False):
            inner = x.to(dtype)  # under autocast x may be bf16; the parameters are fp32
            q = self._queries(inner)
            k = F.normalize(F.silu(self.to_k(inner)), dim=-1)
            v = F.silu(self.to_v(inner))
            theta, eta, alpha = self.gates(inner)
            coefficients = chunked_coefficients(theta, eta, alpha, self.chunk_size)
            reads = []
            for start, coeffs in zip(
                range(0, x.shape[1], self.chunk_size), coefficients, strict=True
            ):
                chunk = slice(start, start + self.chunk_size)
                reads.append(memory_forward(state.weights, q[:, chunk])[0])
                state = _chunk_update(state, k[:, chunk], v[:, chunk], coeffs, self.max_update_norm)
        return self._out(torch.cat(reads, dim=1), x), state


def _state_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32
