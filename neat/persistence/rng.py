"""Capture and restore every global RNG, as JSON.

Bit-exact resume needs the python, numpy, torch-CPU and CUDA generators to continue where
they stopped (dropout masks, sampling, shuffles); leaving any one out diverges at the first
resumed step. JSON (with tensors as base64) keeps pickle out of checkpoints.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import structlog
import torch

from neat.errors import CheckpointError

__all__ = ["capture_rng_state", "restore_rng_state"]

log = structlog.get_logger(__name__)


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
    for required in ("python", "numpy", "torch"):
        if required not in state:
            raise CheckpointError(
                f"the saved RNG state has no {required!r} entry, so the resumed run cannot "
                "reproduce the original; resume from a checkpoint written by neat's trainer"
            )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    npy = state["numpy"]
    keys = np.frombuffer(base64.b64decode(npy["keys"]), dtype="<u4").astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(_tensor_from_b64(state["torch"]))
    saved = state.get("cuda")
    if cuda_device is not None and cuda_device.type == "cuda" and saved:
        torch.cuda.set_rng_state(_tensor_from_b64(saved[0]), device=cuda_device)
    else:
        _restore_cuda(saved)


def _restore_cuda(saved: list[str] | None) -> None:
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
    for index, encoded in enumerate(saved[:count]):
        torch.cuda.set_rng_state(_tensor_from_b64(encoded), device=index)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _tensor_to_b64(tensor: torch.Tensor) -> str:
    return _b64(tensor.detach().cpu().contiguous().numpy().tobytes())


def _tensor_from_b64(encoded: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(encoded)), dtype=torch.uint8)
