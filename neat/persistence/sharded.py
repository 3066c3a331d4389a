"""Sharded checkpoints (checkpoint.format: dcp) through PyTorch distributed checkpoint.

Every rank writes its own shards of the model and optimizer into the checkpoint's `dcp/`
folder (`__<rank>_0.distcp`; rank 0 also DCP's `.metadata`), so no rank ever holds the whole
model. The state is taken with `get_state_dict` (keys are parameter names, the optimizer's
state keyed by them too), which is what lets `dcp.load` cut the saved shards to another
world size's layout on load: 2 ranks resume on 1 or on 4, and one process reads the lot.

What a checkpoint directory means is still the Checkpointer's business: these functions
write and read the `dcp/` folder of a staging directory it prepared, and report the files
each rank wrote so state.json can list them with their sha256.

DCP's `.metadata` is a pickle (PyTorch's format, read with `pickle.load`): neat loads a
DCP checkpoint only after state.json's sha256 of every file matched, and `neat checkpoints
consolidate` turns one into the usual pickle-free safetensors checkpoint to share.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from neat.errors import CheckpointError
from neat.files import fsync_dir, fsync_file, sha256_file
from neat.persistence.manifest import DCP_DIR, DCP_METADATA

__all__ = ["DCP_DIR", "DCP_METADATA", "load_sharded", "save_sharded"]


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _optimizers(optimizer: torch.optim.Optimizer | None) -> list[torch.optim.Optimizer]:
    return [optimizer] if optimizer is not None else []


@contextlib.contextmanager
def _one_process_quietly() -> Iterator[None]:
    """DCP warns that it "assumes a single process" whenever no group exists: neat's
    one-process runs and `consolidate` mean exactly that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """The model's (and optimizer's) state as DCP saves and fills it: this rank's shards."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, _optimizers(optimizer))
    state: dict[str, Any] = {"model": model_state}
    if optimizer is not None:
        state["optimizer"] = optim_state
    return state


def save_sharded(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, checkpoint: Path
) -> dict[str, str]:
    """A collective: every rank writes its shards under `checkpoint/dcp/`; returns
    {name relative to `checkpoint`: sha256} of the files this rank wrote, each fsynced."""
    from torch.distributed.checkpoint.filesystem import FileSystemWriter
    from torch.distributed.checkpoint.state_dict_saver import save

    folder = checkpoint / DCP_DIR
    state = _state(model, optimizer)
    with _one_process_quietly():
        save(state, storage_writer=FileSystemWriter(folder, sync_files=True))
    rank = _rank()
    mine = sorted(folder.glob(f"__{rank}_*.distcp"))
    if rank == 0:
        mine.append(folder / ".metadata")
    hashes = {}
    for file in mine:
        fsync_file(file)
        hashes[f"{DCP_DIR}/{file.name}"] = sha256_file(file)
    if rank == 0:
        fsync_dir(folder)
    return hashes


def load_sharded(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, checkpoint: Path, reason: str
) -> None:
    """Fill `model` (and `optimizer`) from `checkpoint/dcp/`, whatever world size wrote it.
    Under a process group every rank calls it (dcp.load is a collective)."""
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.state_dict import set_state_dict
    from torch.distributed.checkpoint.state_dict_loader import load

    state = _state(model, optimizer)
    try:
        with _one_process_quietly():
            load(state, storage_reader=FileSystemReader(checkpoint / DCP_DIR))
        set_state_dict(
            model,
            _optimizers(optimizer),
            model_state_dict=state["model"],
            optim_state_dict=state.get("optimizer", {}),
        )
    except (RuntimeError, ValueError, KeyError) as exc:  # CheckpointException: RuntimeError
        raise CheckpointError(
            f"cannot load the sharded checkpoint {checkpoint} into this model: {reason} "
            f"({str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__})"
        ) from exc
