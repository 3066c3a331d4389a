"""Mixed precision: which dtype to autocast to, and whether fp16 needs a GradScaler."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` means bf16 where the hardware has it (CUDA with bf16 support), else fp32."""
    if precision != "auto":
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("training.precision=bf16 is not supported on this GPU; use fp16")
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device) -> AbstractContextManager[object]:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)
