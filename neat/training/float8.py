"""`training.float8`: torchao's float8 training of the linear layers.

torchao swaps each chosen `nn.Linear` for a `Float8Linear` whose matmuls run on the tensor
cores' float8 path (`torch._scaled_mm`) with dynamic scaling; weights, optimizer state and
checkpoints stay in their own dtype, under the same names. It pays off only on GPUs with
float8 tensor cores and mostly under `training.compile`, which fuses the casts.
"""

from __future__ import annotations

import importlib
from typing import Any

import structlog
import torch
from torch import nn

from neat.errors import ConfigError

__all__ = ["MIN_CAPABILITY", "convert_to_float8", "float8_filter"]

log = structlog.get_logger(__name__)

MIN_CAPABILITY = (8, 9)  # Ada and Hopper: the first with float8 tensor cores
_GPUS = "a CUDA GPU with compute capability 8.9 or newer (H100, L4, RTX 4090)"
_OUTPUT_HEADS = ("lm_head",)  # the logits stay in high precision (torchao's, torchtitan's advice)
_MULTIPLE = 16  # torch._scaled_mm needs both dims of the weight divisible by 16


def float8_filter(module: nn.Module, fqn: str) -> bool:
    """torchao's `module_filter_fn`: convert a linear layer unless it is the output head or
    a dimension of its weight is not a multiple of 16."""
    if not isinstance(module, nn.Linear) or fqn.rsplit(".", 1)[-1] in _OUTPUT_HEADS:
        return False
    return module.in_features % _MULTIPLE == 0 and module.out_features % _MULTIPLE == 0


def check_float8_device(device: torch.device) -> None:
    """One clear error for a device without float8 tensor cores."""
    if device.type != "cuda":
        raise ConfigError(f"training.float8 needs {_GPUS}; this run is on {device.type}")
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        raise ConfigError(
            f"training.float8 needs {_GPUS}; {torch.cuda.get_device_name(device)} has compute "
            f"capability {capability[0]}.{capability[1]}: set training.float8: false"
        )


def _torchao_float8() -> Any:
    """torchao.float8, imported only when asked for (torchao is an optional dependency)."""
    try:
        return importlib.import_module("torchao.float8")
    except ImportError as exc:
        raise ConfigError(
            "training.float8 needs torchao, which is not installed: pip install torchao"
        ) from exc


def convert_to_float8(model: nn.Module, device: torch.device, *, compiled: bool) -> nn.Module:
    """Swap the chosen linear layers of `model` (in place) for torchao's Float8Linear; before
    DDP, FSDP2 and torch.compile wrap it, so they see the float8 modules."""
    check_float8_device(device)
    float8 = _torchao_float8()
    chosen = [name for name, module in model.named_modules() if float8_filter(module, name)]
    if not chosen:
        raise ConfigError(
            "training.float8: no linear layer to convert (the output head stays, and both "
            "dims of a layer must be multiples of 16): widen the model or set it to false"
        )
    if not compiled:
        log.warning("training.float8 without training.compile is usually slower than bf16")
    converted: nn.Module = float8.convert_to_float8_training(model, module_filter_fn=float8_filter)
    log.info("float8_linear_layers", count=len(chosen))
    return converted
