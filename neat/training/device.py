"""One place that knows about hardware: device choice, fast-math switches and peak FLOPs."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from neat.errors import ConfigError

# Dense bf16 peak FLOP/s per device (datasheet, without sparsity), for MFU.
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


# PyTorch's MPS allocator (aten/src/ATen/mps/MPSAllocator.mm): the high watermark is a share
# of the recommended working set in [0, 2] on unified memory (0: no limit), default 1.7; the
# low one defaults to 1.4 (unified) and must not exceed the high one, so setting only
# PYTORCH_MPS_HIGH_WATERMARK_RATIO below 1.4 (a common tip against out-of-memory errors)
# makes the first MPS allocation fail with "invalid low watermark ratio".
MPS_HIGH = "PYTORCH_MPS_HIGH_WATERMARK_RATIO"
MPS_LOW = "PYTORCH_MPS_LOW_WATERMARK_RATIO"
MPS_HIGH_BOUND = 2.0
MPS_DEFAULT_LOW = 1.4


def mps_watermarks(environ: Mapping[str, str]) -> dict[str, str]:
    """The watermark variables to set so the MPS allocator starts: the low one lowered to a
    high one set below its default; a ConfigError for values it would refuse."""

    def ratio(name: str) -> float | None:
        if name not in environ:
            return None
        try:
            value = float(environ[name])
        except ValueError:
            raise ConfigError(f"{name}={environ[name]!r} is not a number: unset it") from None
        if not 0.0 <= value <= MPS_HIGH_BOUND:
            raise ConfigError(
                f"{name}={value:g} is outside [0, {MPS_HIGH_BOUND:g}]: the MPS allocator "
                "refuses it; unset it, or 0.0 for no limit"
            )
        return value

    high, low = ratio(MPS_HIGH), ratio(MPS_LOW)
    limit = high if high else MPS_HIGH_BOUND  # 0: unlimited
    if low is not None and low > limit:
        raise ConfigError(
            f"{MPS_LOW}={low:g} is above {MPS_HIGH}={high:g}: the MPS allocator refuses "
            f"it; set {MPS_LOW} at most {limit:g}, or unset both"
        )
    if low is None and high and high < MPS_DEFAULT_LOW:
        return {MPS_LOW: f"{high:g}"}
    return {}


def resolve_device(spec: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; an explicit device must exist. On MPS the
    allocator's watermarks are checked (and made consistent) before anything is allocated."""
    device = _pick_device(spec)
    if device.type == "mps":
        os.environ.update(mps_watermarks(os.environ))
    return device


def _pick_device(spec: str) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"training.device: invalid device {spec!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"training.device={spec!r} but CUDA is not available; use 'auto' or 'cpu'"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"training.device={spec!r} but MPS is not available; use 'auto'")
    return device


def enable_fast_math(device: torch.device) -> None:
    """TF32 matmuls on Ampere+ GPUs: about 3x faster fp32 matmuls at no visible quality cost."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


# `training.attention_backend`: the SDPA kernels left on (PyTorch picks among those on; math,
# the reference, stays as the fallback for shapes and masks a fast kernel does not take).
ATTENTION_BACKENDS: dict[str, tuple[str, ...]] = {
    "flash": ("flash", "math"),
    "cudnn": ("cudnn", "math"),
    "efficient": ("mem_efficient", "math"),
    "math": ("math",),
}


def set_attention_backend(name: str, device: torch.device) -> None:
    """Leave only `name`'s SDPA kernels on, process-wide like TF32; `auto` keeps PyTorch's
    choice (flash attention on recent GPUs). cuDNN's attention is the fastest on Hopper for
    some shapes (PyTorch 2.5 release notes), which only a measurement on the GPU tells."""
    if name == "auto" or device.type != "cuda":
        return
    wanted = ATTENTION_BACKENDS[name]
    for kernel in ("flash", "mem_efficient", "cudnn", "math"):
        getattr(torch.backends.cuda, f"enable_{kernel}_sdp")(kernel in wanted)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def memory_bytes(device: torch.device) -> int | None:
    """The memory a model on `device` can use: the GPU's, or the host's physical RAM."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # not a POSIX system
            return None
    return None
