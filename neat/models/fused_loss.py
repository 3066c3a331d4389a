"""The output layer and cross-entropy in chunks of rows, never holding all the logits.

A (batch*seq, vocab) logits tensor, its fp32 copy and its gradient are often the largest
activations of a small-width, large-vocabulary model. Liger Kernel (Hsu et al. 2024, "Liger
Kernel: efficient Triton kernels for LLM training", arXiv 2410.10989, fused linear cross
entropy) computes them a chunk of rows at a time and, since the loss is a scalar, the
gradients wrt the hidden states and the head weight in the same pass: each chunk's logits
become its softmax minus the one-hot targets in place, are multiplied out and dropped. The
backward only scales the stored gradients, so no logits are recomputed either.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from neat.errors import ConfigError

__all__ = ["DEFAULT_CHUNK", "enable_fused_loss", "fused_linear_cross_entropy"]

DEFAULT_CHUNK = 1024  # rows: a 50k-vocabulary chunk is 200 MB of fp32 logits
IGNORE_INDEX = -100


def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    """What the head's matmul runs in: autocast's dtype when on (as `lm_head(h)` would)."""
    device = h.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return h.dtype


def _chunk_loss(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    keep_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The chunk's summed CE (in fp32 at least) and, when `keep_grad`, d(sum)/d(logits): the
    logits' own buffer, overwritten."""
    logits = (h @ weight.T).to(torch.promote_types(h.dtype, torch.float32))
    if bias is not None:
        logits += bias
    valid = targets != IGNORE_INDEX
    picked = targets.clamp(min=0).unsqueeze(1)
    lse = torch.logsumexp(logits, dim=-1)
    loss = ((lse - logits.gather(1, picked).squeeze(1)) * valid).sum()
    if not keep_grad:
        return loss, None
    grad = logits.sub_(lse.unsqueeze(1)).exp_()  # softmax
    grad.scatter_add_(1, picked, torch.full_like(lse, -1.0).unsqueeze(1))
    grad *= valid.unsqueeze(1)
    return loss, grad


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Forward: the mean CE over non-ignored rows, and its gradients chunk by chunk.
    Backward: those gradients times the incoming scalar (the loss scale, 1/accumulation)."""

    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk: int,
    ) -> torch.Tensor:
        wants_h, wants_w, wants_b = ctx.needs_input_grad[:3]
        acc = torch.promote_types(h.dtype, torch.float32)
        grad_h = torch.zeros(h.shape, dtype=acc, device=h.device) if wants_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc, device=h.device) if wants_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=h.device) if wants_b else None
        total = torch.zeros((), dtype=acc, device=h.device)
        for start in range(0, h.shape[0], chunk):
            rows = slice(start, start + chunk)
            loss, grad = _chunk_loss(h[rows], weight, bias, targets[rows], keep_grad=True)
            assert grad is not None
            total += loss
            low = grad.to(h.dtype)  # the matmuls in the head's dtype, as autograd's would be
            if grad_h is not None:
                grad_h[rows] = low @ weight
            if grad_w is not None:
                grad_w += low.T @ h[rows]
            if grad_b is not None:
                grad_b += grad.sum(0)
        scale = 1.0 / (targets != IGNORE_INDEX).sum()  # NaN when all are ignored, as torch's
        ctx.save_for_backward(*(None if g is None else g * scale for g in (grad_h, grad_w, grad_b)))
        ctx.dtypes = (h.dtype, weight.dtype, weight.dtype)
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        scaled = tuple(
            None if g is None else (g * grad_out).to(dtype)
            for g, dtype in zip(ctx.saved_tensors, ctx.dtypes, strict=True)
        )
        return (*scaled, None, None)


def fused_linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """`F.cross_entropy(h @ weight.T + bias, targets, ignore_index=-100)` (the mean over
    non-ignored targets) for `h` (rows, dim) and `targets` (rows,), computed `chunk` rows at
    a time. Under autocast the matmuls run in its dtype and the softmax in fp32, as the plain
    head would; without gradients (evaluation) only the loss is computed."""
    dtype = _compute_dtype(h)
    h, weight = h.to(dtype), weight.to(dtype)
    bias = bias.to(dtype) if bias is not None else None
    with torch.autocast(h.device.type, enabled=False):
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            loss: torch.Tensor = _FusedLinearCrossEntropy.apply(  # type: ignore[no-untyped-call]
                h, weight, bias, targets, chunk
            )
            return loss
        total = torch.zeros((), dtype=torch.promote_types(h.dtype, torch.float32), device=h.device)
        for i in range(0, h.shape[0], chunk):
            rows = slice(i, i + chunk)
            total += _chunk_loss(h[rows], weight, bias, targets[rows], keep_grad=False)[0]
        return total / (targets != IGNORE_INDEX).sum()


def enable_fused_loss(model: nn.Module, model_type: str, chunk: int) -> None:
    """Set `training.fused_loss` on a model that supports it (GPT, its `lm_head` a plain
    linear layer, not one wrapped by an adapter), or say it cannot."""
    if not hasattr(model, "fused_loss_chunk"):
        raise ConfigError(
            f"training.fused_loss: model type {model_type!r} does not support it; set it to false"
        )
    if type(getattr(model, "lm_head", None)) is not nn.Linear:
        raise ConfigError(
            "training.fused_loss needs the output layer as trained (finetune.targets adapts "
            "lm_head): leave lm_head out of finetune.targets or set training.fused_loss: false"
        )
    setattr(model, "fused_loss_chunk", chunk)  # noqa: B010  (nn.Module typing)
