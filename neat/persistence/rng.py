"""Capture and restore every global RNG, as JSON.

Bit-exact resume needs the python, numpy, torch-CPU and CUDA generators to continue where
they stopped (dropout masks, sampling, shuffles); leaving any one out diverges at the first
resumed step. JSON (with tensors as base64) keeps pickle out of checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import random
from typing import Any

import numpy as np
import structlog
import torch

from neat.errors import CheckpointError

__all__ = ["capture_rng_state", "check_rng_states", "restore_rng_state"]

log = structlog.get_logger(__name__)

_TORCH_STATE_BYTES = int(torch.get_rng_state().numel())
_NUMPY_KEYS = 624
# What garbage in a saved state can raise while it is decoded
_BAD_STATE = (KeyError, TypeError, ValueError, IndexError, OverflowError, binascii.Error)


def capture_rng_state(cuda_device: torch.device | None = None) -> dict[str, Any]:
    """Snapshot the global generators; the result survives `json.dumps`/`json.loads`.

    `cuda_device`: only that GPU's generator (one process per GPU under torchrun; touching
    the others would open a CUDA context on each). Default: every visible GPU's.
    """
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "name": name,
            "keys": _b64(np.ascontiguousarray(keys, dtype="<u4").tobytes()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": _tensor_to_b64(torch.get_rng_state()),
    }
    if cuda_device is not None and cuda_device.type == "cuda":
        state["cuda"] = [_tensor_to_b64(torch.cuda.get_rng_state(cuda_device))]
    elif torch.cuda.is_available():
        state["cuda"] = [_tensor_to_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any], cuda_device: torch.device | None = None) -> None:
    """Put the generators back as captured. A missing "cuda" entry (CPU run) is fine.

    `cuda_device`: the one GPU whose generator was captured alone (see capture_rng_state).
    """
    py, npy, cpu, saved = _decode(state, "the saved RNG state")
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(cpu)
    if cuda_device is not None and cuda_device.type == "cuda" and saved:
        torch.cuda.set_rng_state(saved[0], device=cuda_device)
    else:
        _restore_cuda(saved)


def check_rng_states(saved: Any, source: str) -> None:
    """Decode (without applying) a checkpoint's RNG state, one process's or every rank's
    (`{"world_size", "ranks"}`), so garbage fails at load naming `source`, not mid-resume."""
    entries = saved["ranks"] if isinstance(saved, dict) and "ranks" in saved else [saved]
    if not isinstance(entries, list):
        entries = [entries]
    for entry in entries:
        _decode(entry, f"the RNG state in {source}")


def _decode(
    state: Any, what: str
) -> tuple[tuple[Any, ...], tuple[Any, ...], torch.Tensor, list[torch.Tensor] | None]:
    """The generators' states as their setters take them; CheckpointError for anything else."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} is not a JSON object; {_FIX}")
    for required in ("python", "numpy", "torch"):
        if required not in state:
            raise CheckpointError(
                f"{what} has no {required!r} entry, so the resumed run cannot "
                "reproduce the original; resume from a checkpoint written by neat's trainer"
            )
    try:
        py = state["python"]
        internal = tuple(py["internal"])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in internal):
            raise ValueError("python 'internal' must hold integers")
        gauss = py["gauss_next"]
        if gauss is not None and not isinstance(gauss, float | int):
            raise ValueError("python 'gauss_next' must be a number or null")
        python_state = (py["version"], internal, gauss)
        random.Random().setstate(python_state)  # validates without touching the global one
        npy = state["numpy"]
        keys = np.frombuffer(base64.b64decode(npy["keys"], validate=True), dtype="<u4")
        if keys.size != _NUMPY_KEYS:
            raise ValueError(f"numpy 'keys' must hold {_NUMPY_KEYS} words, not {keys.size}")
        numpy_state = (
            str(npy["name"]),
            keys.astype(np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached_gaussian"]),
        )
        np.random.RandomState().set_state(numpy_state)
        cpu = _tensor_from_b64(state["torch"])
        if cpu.numel() != _TORCH_STATE_BYTES:
            raise ValueError(f"'torch' must hold {_TORCH_STATE_BYTES} bytes, not {cpu.numel()}")
        cuda = state.get("cuda")
        gpus = None if cuda is None else [_tensor_from_b64(encoded) for encoded in cuda]
    except _BAD_STATE as exc:
        raise CheckpointError(f"{what} is invalid ({_describe(exc)}); {_FIX}") from None
    return python_state, numpy_state, cpu, gpus


_FIX = "the checkpoint was edited or damaged: resume from another checkpoint"


def _describe(exc: Exception) -> str:
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__


def _restore_cuda(saved: list[torch.Tensor] | None) -> None:
    # Resuming a GPU run on CPU (or on fewer GPUs) is allowed for evaluation and debugging,
    # but it can no longer be bit-exact, so say so rather than fail.
    if saved is None:
        return
    if not torch.cuda.is_available():
        log.warning("cuda_rng_state_not_restored", reason="CUDA is not available")
        return
    count = torch.cuda.device_count()
    if count != len(saved):
        log.warning("cuda_rng_device_count_differs", saved=len(saved), available=count)
    for index, tensor in enumerate(saved[:count]):
        torch.cuda.set_rng_state(tensor, device=index)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _tensor_to_b64(tensor: torch.Tensor) -> str:
    return _b64(tensor.detach().cpu().contiguous().numpy().tobytes())


def _tensor_from_b64(encoded: str) -> torch.Tensor:
    if not isinstance(encoded, str):
        raise TypeError(f"expected a base64 string, got {type(encoded).__name__}")
    data = bytearray(base64.b64decode(encoded, validate=True))
    if not data:
        raise ValueError("an RNG state is empty")
    return torch.frombuffer(data, dtype=torch.uint8)
