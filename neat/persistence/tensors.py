"""Model and optimizer state to and from safetensors files, never through pickle.

safetensors stores a flat name -> tensor table and refuses two names over one storage, so
tied weights are stored once and the other names recorded as aliases; the optimizer's
nested state becomes a flat tensor table plus a JSON skeleton that points into it.

Sharded tensors (DTensors of an FSDP2 model and its optimizer) are gathered whole on save and
cut back to this rank's shard on load, so every checkpoint has one layout whatever wrote it.
Gathering is a collective: every rank saves, in the same order; only the writer keeps data.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

from neat.errors import CheckpointError
from neat.files import FILE_MODE, write_json_atomic

_COMPILE_WRAPPER = "_orig_mod"  # the attribute torch.compile's OptimizedModule wraps the model in
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_REWRITE_HINT = "delete this checkpoint directory or resume from an earlier one"
_OS_ERROR = re.compile(r"os error (\d+)")  # how safetensors' Rust side reports an I/O error

Shape = tuple[int, ...]


def plain_key(key: str) -> str:
    """A state_dict key without torch.compile's `_orig_mod.` parts, so compiled and eager
    models read each other's checkpoints."""
    return ".".join(part for part in key.split(".") if part != _COMPILE_WRAPPER)


def is_sharded(tensor: object) -> TypeGuard[DTensor]:
    """A DTensor (FSDP2's parameters and optimizer state)? Checked without importing
    torch.distributed.tensor, ~0.7 s of start-up that one-process commands need not pay:
    until something has imported it, no DTensor can exist."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` under plain keys."""
    return {plain_key(k): v for k, v in model.state_dict().items()}


class _TensorTable:
    """Collects tensors for one safetensors file, storing each distinct tensor once.

    `keep=False` (a rank that does not write) still gathers sharded tensors, the collective
    the writer waits on, but keeps nothing.
    """

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.tensors: dict[str, torch.Tensor] = {}
        self._views: dict[tuple[object, ...], str] = {}
        self._storages: set[tuple[torch.device, int]] = set()
        self._sharded: dict[int, tuple[DTensor, str]] = {}  # id -> (kept alive, stored name)

    def add(self, name: str, tensor: torch.Tensor) -> str:
        """Store `tensor` under `name`; returns the name it is actually stored under (an
        earlier name when it is the very same view, i.e. a tied weight)."""
        if is_sharded(tensor):
            return self._add_sharded(name, tensor)
        tensor = tensor.detach()
        if not self.keep:
            return name
        shared = False
        if tensor.numel() > 0:  # empty tensors may all report data_ptr 0
            storage = (tensor.device, tensor.untyped_storage().data_ptr())
            offset, shape = tensor.storage_offset(), tuple(tensor.shape)
            view = (*storage, offset, shape, tensor.stride(), tensor.dtype)
            if view in self._views:
                return self._views[view]
            self._views[view] = name
            shared = storage in self._storages
            self._storages.add(storage)
        cpu = tensor.to("cpu").contiguous()
        # Two different views of one storage (e.g. halves of a fused weight) must not both
        # reach safetensors as views: copy the later ones.
        self.tensors[name] = cpu.clone() if shared else cpu
        return name

    def _add_sharded(self, name: str, tensor: DTensor) -> str:
        # A tied sharded parameter is one Parameter object under two names: identity, not
        # storage, decides, because a rank's shard may be empty and every rank must agree
        # on which tensors to gather.
        if id(tensor) in self._sharded:
            return self._sharded[id(tensor)][1]
        self._sharded[id(tensor)] = (tensor, name)
        with torch.no_grad():
            whole = tensor.full_tensor()
        if self.keep:
            self.tensors[name] = whole.to("cpu").contiguous()
        return name

    def save(self, path: Path) -> None:
        try:
            save_file(self.tensors, str(path), metadata={"format": "pt"})
        except Exception as exc:  # SafetensorError derives from Exception only
            code = _OS_ERROR.search(str(exc))
            if code is None:
                raise
            # the disk is full (or read-only...): an OSError like every other write's
            number = int(code.group(1))
            raise OSError(number, os.strerror(number), str(path)) from exc
        os.chmod(path, FILE_MODE)  # safetensors creates it with the umask


def save_model(model: torch.nn.Module, path: Path | None) -> dict[str, str]:
    """Write the model's tensors; returns {alias: stored name} for tied weights.

    `path=None`: take part in gathering sharded tensors, write nothing (a non-writing rank).
    """
    table = _TensorTable(keep=path is not None)
    aliases: dict[str, str] = {}
    # keep_vars: tied parameters stay one object under both names (see _add_sharded)
    for key, tensor in model.state_dict(keep_vars=True).items():
        name = plain_key(key)
        stored = table.add(name, tensor)
        if stored != name:
            aliases[name] = stored
    if path is not None:
        table.save(path)
    return aliases


def check_model_fits(
    saved_shapes: Mapping[str, Shape], model: torch.nn.Module, reason: str
) -> None:
    """Compare names and shapes before any copy, so a mismatch leaves the model untouched
    and the message says which tensor differs (torch's own error lists them all, unordered)."""
    current = model_state(model)
    for name, tensor in current.items():
        expected = tuple(tensor.shape)
        if name in saved_shapes and saved_shapes[name] != expected:
            raise CheckpointError(
                f"tensor {name!r} has shape {saved_shapes[name]} in the checkpoint but "
                f"{expected} in the model: {reason}"
            )
    missing = [name for name in current if name not in saved_shapes]
    if missing:
        raise CheckpointError(
            f"the checkpoint lacks {len(missing)} tensor(s) the model has "
            f"({_names(missing)}): {reason}"
        )
    unexpected = [name for name in saved_shapes if name not in current]
    if unexpected:
        raise CheckpointError(
            f"the checkpoint has {len(unexpected)} tensor(s) the model lacks "
            f"({_names(unexpected)}): {reason}"
        )


def read_shapes(path: Path, aliases: Mapping[str, str]) -> dict[str, Shape]:
    """Tensor shapes from the file header alone (no data read), aliases included."""
    _check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()
            shapes: dict[str, Shape] = {n: tuple(f.get_slice(n).get_shape()) for n in names}
    except Exception as exc:  # SafetensorError derives from Exception only
        raise _unreadable(path, exc) from exc
    for alias, stored in aliases.items():
        if stored not in shapes:
            raise CheckpointError(
                f"checkpoint file {path.name} has no tensor {stored!r}, which state.json "
                f"names as the storage of {alias!r}; {_REWRITE_HINT}"
            )
        shapes[alias] = shapes[stored]
    return shapes


def load_model(
    model: torch.nn.Module,
    path: Path,
    aliases: Mapping[str, str],
    mismatch_reason: str,
    migrate: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> None:
    """Check names and shapes, then copy the stored tensors into the model's existing
    parameters (so ties stay tied and the parameters keep their device).

    `migrate` rewrites an older format's tensors (aliases resolved) to today's names first;
    the check then runs on what it returns.
    """
    shapes = read_shapes(path, aliases)
    if migrate is None:
        check_model_fits(shapes, model, mismatch_reason)
        loaded = _load_tensors(path)
    else:
        stored = _load_tensors(path)
        loaded = migrate({**stored, **{alias: stored[name] for alias, name in aliases.items()}})
        aliases = {}
        check_model_fits({k: tuple(v.shape) for k, v in loaded.items()}, model, mismatch_reason)
    current = model.state_dict()
    state = {
        k: _like(loaded[aliases.get(plain_key(k), plain_key(k))], v) for k, v in current.items()
    }
    for key, value in state.items():
        _check_dtype(plain_key(key), value, current[key], mismatch_reason)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"cannot load {path.name} into the model: {exc}") from exc


def _check_dtype(name: str, saved: torch.Tensor, target: torch.Tensor, reason: str) -> None:
    """Float widths may cast (a bf16 checkpoint into a float32 model); integer and bool
    tensors (token ids, counters, masks) would change meaning or overflow: refuse."""
    if saved.dtype == target.dtype:
        return
    if saved.dtype.is_floating_point and target.dtype.is_floating_point:
        return
    raise CheckpointError(
        f"tensor {name!r} is {str(saved.dtype).removeprefix('torch.')} in the checkpoint but "
        f"{str(target.dtype).removeprefix('torch.')} in the model, and only floating-point "
        f"tensors are cast on load: {reason}"
    )


def save_optimizer(
    optimizer: torch.optim.Optimizer, tensors_path: Path | None, json_path: Path | None
) -> None:
    """Tensors to `state.<param_id>.<name>` in safetensors, everything else to JSON.

    `None` paths: only take part in gathering sharded state (a non-writing rank).
    """
    table = _TensorTable(keep=tensors_path is not None)
    skeleton: dict[str, Any] = {}
    for key, value in optimizer.state_dict().items():
        if key == "state":
            skeleton[key] = {
                str(pid): _encode(v, f"state.{pid}", table) for pid, v in value.items()
            }
        else:
            skeleton[key] = _encode(value, key, table)
    if tensors_path is not None and json_path is not None:
        table.save(tensors_path)
        write_json_atomic(json_path, skeleton)


def load_optimizer(
    optimizer: torch.optim.Optimizer, skeleton: Mapping[str, Any], tensors_path: Path
) -> None:
    """Rebuild the state dict and let torch move each tensor to its parameter's device."""
    tensors = _load_tensors(tensors_path)
    try:
        state_dict = {key: _decode(value, tensors) for key, value in skeleton.items()}
        state_dict["state"] = {int(pid): v for pid, v in state_dict.get("state", {}).items()}
        _shard_like_params(optimizer, state_dict)
        optimizer.load_state_dict(state_dict)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"the optimizer state in {tensors_path.parent} does not fit this optimizer ({exc}): "
            "the checkpoint was saved with a different optimizer or model config"
        ) from exc


def _like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`value` (a whole tensor from the file) as `target` holds it: this rank's shard when
    `target` is sharded. Every rank read the same file, so no data moves between ranks."""
    if not is_sharded(target):
        return value
    from torch.distributed.tensor import distribute_tensor

    local = value.to(target.to_local().device)
    return distribute_tensor(local, target.device_mesh, target.placements, src_data_rank=None)


def _shard_like_params(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> None:
    """Cut whole optimizer state tensors (exp_avg, ...) to the shards of sharded params."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(is_sharded(p) for p in params):
        return
    saved_ids = [pid for group in state_dict.get("param_groups", []) for pid in group["params"]]
    state = state_dict["state"]
    for pid, param in zip(saved_ids, params, strict=False):
        if is_sharded(param) and pid in state:
            state[pid] = {
                k: _like(v, param) if isinstance(v, torch.Tensor) and v.shape == param.shape else v
                for k, v in state[pid].items()
            }


def _encode(value: Any, name: str, table: _TensorTable) -> Any:
    if isinstance(value, torch.Tensor):
        return {_TENSOR: table.add(name, value)}
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CheckpointError(f"optimizer state {name!r} has a non-string key {key!r}")
        return {key: _encode(v, f"{name}.{key}", table) for key, v in value.items()}
    if isinstance(value, list):
        return [_encode(v, f"{name}.{i}", table) for i, v in enumerate(value)]
    if isinstance(value, tuple):  # e.g. AdamW's betas: keep the type torch gave us
        return {_TUPLE: [_encode(v, f"{name}.{i}", table) for i, v in enumerate(value)]}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise CheckpointError(
        f"optimizer state {name!r} holds a {type(value).__name__}, which cannot be saved "
        "without pickle; keep optimizer state to tensors, numbers, strings and containers"
    )


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TENSOR}:
            return tensors[value[_TENSOR]]
        if set(value) == {_TUPLE}:
            return tuple(_decode(v, tensors) for v in value[_TUPLE])
        return {key: _decode(v, tensors) for key, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    _check_safetensors(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError derives from Exception only
        raise _unreadable(path, exc) from exc


def _check_safetensors(path: Path) -> None:
    """A safetensors file starts with its header's length and then the JSON header; say
    plainly when a file is something else (a torch.save pickle renamed, say), rather than
    the parser's "header too large"."""
    try:
        with path.open("rb") as f:
            start = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    header_len = struct.unpack("<Q", start[:8])[0] if len(start) == 9 else None
    if header_len is not None and header_len <= size - 8 and start[8:9] == b"{":
        return
    kind = ""
    if start[:2] == b"PK":
        kind = " (it is a zip archive, as torch.save writes)"
    elif start[:1] == b"\x80":
        kind = " (it is a Python pickle)"
    raise CheckpointError(
        f"checkpoint file {path.name} in {path.parent} is not a safetensors file{kind}; neat "
        f"reads tensors only from safetensors, never from pickles: {_REWRITE_HINT}"
    )


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"checkpoint file {path.name} in {path.parent} cannot be read ({exc}); it is corrupted "
        f"or truncated: {_REWRITE_HINT}"
    )


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
