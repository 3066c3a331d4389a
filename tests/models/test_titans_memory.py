"""The Titans memory against a token-by-token reference built on autograd (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neat.models.titans.config import MemoryConfig
from neat.models.titans.memory import MemoryState, NeuralMemory, memory_forward

DIM = 8


def memory(chunk: int, depth: int = 2, **fields: float | None) -> NeuralMemory:
    """The paper's rule (the step unclipped), which the autograd reference follows."""
    torch.manual_seed(0)
    fields = {"max_update_norm": None, **fields}
    mem = NeuralMemory(DIM, MemoryConfig(chunk_size=chunk, depth=depth, **fields)).double()
    with torch.no_grad():  # data-dependent gates, not the near-constant ones of the init
        mem.to_gates.weight.normal_(0.0, 1.0)
    return mem


def reference(mem: NeuralMemory, x: torch.Tensor, chunk: int) -> tuple[torch.Tensor, MemoryState]:
    """The paper's recurrence token by token; each token's gradient by autograd at the weights
    its chunk started with (chunk 1: at the previous token's weights, the plain sequential
    form). Reads of a chunk use its start weights."""
    state = mem.initial_state(x.shape[0], torch.float64)
    q = F.normalize(F.silu(mem.to_q(x)), dim=-1)
    k = F.normalize(F.silu(mem.to_k(x)), dim=-1)
    v = F.silu(mem.to_v(x))
    theta, eta, alpha = mem.gates(x)
    weights, momentum = list(state.weights), list(state.momentum)
    reads = []
    for start in range(0, x.shape[1], chunk):
        at = [w.detach().requires_grad_(True) for w in weights]
        reads.append(memory_forward(tuple(weights), q[:, start : start + chunk])[0])
        for t in range(start, min(start + chunk, x.shape[1])):
            y = memory_forward(tuple(at), k[:, t : t + 1])[0]
            loss = ((y - v[:, t : t + 1].detach()) ** 2).mean(-1).sum()  # summed over B
            grads = torch.autograd.grad(loss, at)
            for i, g in enumerate(grads):
                th, et, al = (z[:, t, None, None].detach() for z in (theta, eta, alpha))
                momentum[i] = et * momentum[i] - th * g
                weights[i] = (1 - al) * weights[i] + momentum[i]
    out = mem._out(torch.cat(reads, dim=1), x)
    return out, MemoryState(tuple(weights), tuple(momentum))


def detached(state: MemoryState) -> list[torch.Tensor]:
    return [t.detach() for t in (*state.weights, *state.momentum)]


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_chunked_update_equals_the_token_by_token_recurrence(chunk: int, depth: int) -> None:
    mem = memory(chunk, depth)
    x = torch.randn(2, 11, DIM, dtype=torch.float64)  # 11: a short last chunk too
    out, state = mem(x)
    ref_out, ref_state = reference(mem, x, chunk)
    torch.testing.assert_close(out, ref_out.detach(), rtol=0, atol=1e-10)
    for got, want in zip(detached(state), detached(ref_state), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_streaming_in_pieces_equals_one_call() -> None:
    mem = memory(4)
    x = torch.randn(3, 24, DIM, dtype=torch.float64)
    whole, final = mem(x)
    first, carried = mem(x[:, :8])
    second, carried = mem(x[:, 8:20], carried)
    third, carried = mem(x[:, 20:], carried)
    torch.testing.assert_close(torch.cat([first, second, third], 1), whole, rtol=0, atol=1e-12)
    for got, want in zip(detached(carried), detached(final), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_writing_the_same_pairs_again_and_again_lowers_their_loss() -> None:
    """Test-time memorisation with the outer parameters frozen: the same 8 tokens every
    chunk; the inner loss before each chunk falls (not monotonically: momentum overshoots)."""
    mem = memory(8)
    with torch.no_grad():
        mem.to_gates.weight.zero_()
        pairs = torch.randn(1, 8, DIM, dtype=torch.float64)
        k = F.normalize(F.silu(mem.to_k(pairs)), dim=-1)
        v = F.silu(mem.to_v(pairs))
        state, losses = None, []
        for _ in range(12):
            weights = (state or mem.initial_state(1, torch.float64)).weights
            losses.append(float(((memory_forward(weights, k)[0] - v) ** 2).mean(-1).sum()))
            _, state = mem(pairs, state)
    assert sum(losses[-3:]) / 3 < 0.3 * losses[0], losses


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_without_momentum_a_chunk_is_one_gradient_step_and_alpha_one_erases(alpha: float) -> None:
    """eta = 0, alpha = 0: M = M_prev - sum_i theta_i * grad_i(M_prev), plain (mini-batch)
    gradient descent. alpha = 1: each token erases what came before, so only the last
    token's step is left (its gradient still taken at M_prev, the chunk's start)."""
    mem = memory(4)
    x = torch.randn(2, 8, DIM, dtype=torch.float64)
    with torch.no_grad():
        mem.to_gates.weight.zero_()
        mem.to_gates.bias.copy_(torch.tensor([0.0, -60.0, 60.0 if alpha else -60.0]))
        _, previous = mem(x[:, :4])
        _, state = mem(x[:, 4:], previous)
    grads = gradient_sums(mem, x[:, 7:] if alpha else x[:, 4:], previous)
    for got, before, grad in zip(state.weights, previous.weights, grads, strict=True):
        torch.testing.assert_close(got, (1 - alpha) * before - grad, rtol=0, atol=1e-10)


def gradient_sums(mem: NeuralMemory, x: torch.Tensor, at: MemoryState) -> list[torch.Tensor]:
    """sum_i theta_i * grad ||M(k_i) - v_i||^2 / D at the weights `at`, by autograd."""
    weights = [w.detach().clone().requires_grad_(True) for w in at.weights]
    k = F.normalize(F.silu(mem.to_k(x)), dim=-1).detach()
    v = F.silu(mem.to_v(x)).detach()
    theta = mem.gates(x)[0].detach()
    loss = (((memory_forward(tuple(weights), k)[0] - v) ** 2).mean(-1) * theta).sum()
    return list(torch.autograd.grad(loss, weights))


def test_gradients_reach_the_projections_gates_and_initial_weights() -> None:
    mem = memory(4)
    x = torch.randn(2, 16, DIM, dtype=torch.float64)
    out, _ = mem(x)
    out.pow(2).sum().backward()
    for name in ("to_q.weight", "to_k.weight", "to_v.weight", "to_gates.weight"):
        grad = dict(mem.named_parameters())[name].grad
        assert grad is not None and grad.abs().max() > 0, name
    assert all(w.grad is not None and w.grad.abs().max() > 0 for w in mem.init_weights)


def test_a_detached_inner_update_would_starve_the_key_projection() -> None:
    """Negative control for the test above: W_K reaches the loss only through the writes."""
    mem = memory(4)
    x = torch.randn(2, 16, DIM, dtype=torch.float64)
    with torch.no_grad():
        _, state = mem(x[:, :8])
    out, _ = mem(x[:, 8:], MemoryState(*(tuple(t.detach() for t in part) for part in state)))
    out.pow(2).sum().backward()
    assert mem.to_k.weight.grad is not None
    # reads of the first chunk of this call use the carried (detached) weights, later chunks
    # the weights this call wrote: W_K still gets a gradient from them ...
    assert mem.to_k.weight.grad.abs().max() > 0
    mem.zero_grad()
    out, _ = mem(x[:, :4])  # ... but a single chunk never reads its own writes
    out.pow(2).sum().backward()
    assert mem.to_k.weight.grad is None or mem.to_k.weight.grad.abs().max() == 0


def test_sequences_of_a_batch_do_not_share_memory() -> None:
    mem = memory(4)
    x = torch.randn(3, 12, DIM, dtype=torch.float64)
    together, _ = mem(x)
    for b in range(3):
        alone, _ = mem(x[b : b + 1])
        torch.testing.assert_close(alone, together[b : b + 1], rtol=0, atol=1e-12)


def test_reads_are_causal_with_a_negative_control() -> None:
    mem = memory(4)
    x = torch.randn(1, 16, DIM, dtype=torch.float64)
    out, _ = mem(x)
    for t in (3, 4, 9):
        moved = x.clone()
        moved[:, t + 1 :] += torch.randn_like(moved[:, t + 1 :])
        torch.testing.assert_close(mem(moved)[0][:, : t + 1], out[:, : t + 1], rtol=0, atol=0)
    # negative control: reading with the weights after the whole sequence sees the future
    _, final = mem(x)
    leaky = memory_forward(final.weights, F.normalize(F.silu(mem.to_q(x)), dim=-1))[0]
    moved = x.clone()
    moved[:, 8:] += 1.0
    _, final_moved = mem(moved)
    leaky_moved = memory_forward(final_moved.weights, F.normalize(F.silu(mem.to_q(x)), dim=-1))[0]
    assert (leaky_moved[:, :4] - leaky[:, :4]).abs().max() > 1e-6


def test_momentum_is_bounded_so_a_saturated_memory_stays_finite() -> None:
    """theta at max_lr with eta -> 1 on a repeated pattern diverged to NaN within 512 tokens
    before eta was bounded by max_momentum (width 64, as the passkey benchmark runs)."""
    torch.manual_seed(0)
    mem = NeuralMemory(64, MemoryConfig(chunk_size=16))
    with torch.no_grad():
        mem.to_gates.bias.copy_(torch.tensor([20.0, 20.0, -20.0]))  # theta, eta, alpha saturated
        x = torch.randn(1, 8, 64).repeat(2, 64, 1)
        out, state = mem(x)
    assert torch.isfinite(out).all() and all(torch.isfinite(w).all() for w in state.weights)


@pytest.mark.parametrize("value_scale", [3.0, 10.0])
def test_clipped_step_keeps_a_deep_memory_finite_where_the_plain_rule_diverges(
    value_scale: float,
) -> None:
    """Large values at a saturated lr: the paper's rule (max_update_norm: null) blows a
    2-layer memory up to NaN within 1024 tokens; the clipped step keeps it bounded."""

    def final_state(max_update_norm: float | None) -> tuple[torch.Tensor, MemoryState]:
        torch.manual_seed(0)
        mem = NeuralMemory(64, MemoryConfig(chunk_size=16, max_update_norm=max_update_norm))
        with torch.no_grad():
            mem.to_gates.bias.copy_(torch.tensor([20.0, 20.0, -20.0]))
            mem.to_v.weight.mul_(value_scale)
            return mem(torch.randn(1, 8, 64).repeat(2, 128, 1))

    out, _ = final_state(None)
    assert not torch.isfinite(out).all()  # the negative control
    out, state = final_state(1.0)
    assert torch.isfinite(out).all()
    assert max(float(w.abs().max()) for w in state.weights) < 10.0


def test_one_chunk_step_is_clipped_to_max_update_norm() -> None:
    """From a zero surprise the first chunk moves M by exactly -sum_w: its norm per layer
    and sequence is max_update_norm when the raw step is larger, the raw step otherwise."""
    x = torch.randn(2, 16, 64, dtype=torch.float64)

    def step_norms(max_update_norm: float | None) -> torch.Tensor:
        torch.manual_seed(0)
        cfg = MemoryConfig(chunk_size=16, max_update_norm=max_update_norm)
        mem = NeuralMemory(64, cfg).double()
        with torch.no_grad():
            mem.to_gates.bias.copy_(torch.tensor([20.0, 0.0, -20.0]))  # theta 1, alpha 0
            mem.to_v.weight.mul_(10.0)
            _, state = mem(x)
        start = mem.initial_state(2, torch.float64).weights
        return torch.stack(
            [
                torch.linalg.vector_norm(w - w0, dim=(1, 2))
                for w, w0 in zip(state.weights, start, strict=True)
            ]
        )

    raw = step_norms(None)
    assert (raw > 0.5).all()
    clipped = step_norms(0.5)
    torch.testing.assert_close(clipped, torch.full_like(clipped, 0.5), rtol=0, atol=1e-6)
    torch.testing.assert_close(step_norms(10.0 * float(raw.max())), raw)
