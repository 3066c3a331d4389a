"""What makes a checkpoint directory complete, and how to find the newest complete one.

`state.json` is written last and lists every other file with its sha256, so a directory is
trusted only when state.json parses and every listed file hashes as recorded: a save killed
mid-way, a truncated copy or a flipped bit all fail this check and are never resumed from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from neat.errors import CheckpointError
from neat.persistence.files import sha256_file

__all__ = [
    "FORMAT_VERSION",
    "OLDEST_FORMAT_VERSION",
    "config_differences",
    "find_latest",
    "is_complete",
    "read_checkpoint_meta",
    "resolve_checkpoint",
    "step_dirs",
]

log = structlog.get_logger(__name__)

FORMAT_VERSION = 1
# Older versions hold older tensor layouts that neat.persistence.migrations rewrites on load.
OLDEST_FORMAT_VERSION = 0
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
STEP_PREFIX = "step_"
TMP_PREFIX = ".tmp-"
CHECKPOINTS_DIR = "checkpoints"

_STEP_NAME = re.compile(rf"{STEP_PREFIX}(\d+)")
_ABSENT = object()


def step_of(path: Path) -> int | None:
    """The step number of a `step_<N>` directory name, else None."""
    match = _STEP_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def step_dirs(directory: Path) -> list[tuple[int, Path]]:
    """`step_<N>` directories under `directory`, newest (highest N) first; unverified."""
    if not directory.is_dir():
        return []
    found = [(step_of(p), p) for p in directory.iterdir() if p.is_dir()]
    return sorted(((s, p) for s, p in found if s is not None), reverse=True)


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """state.json of a checkpoint, returned only after every listed file verified.

    Raises CheckpointError saying what is wrong and what to do about it.
    """
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a directory")
    hint = f"delete {path} or resume from an earlier checkpoint"
    state_path = path / STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(
            f"checkpoint {path} has no {STATE_FILE}: its save did not finish (the process "
            f"was probably stopped mid-save); {hint}"
        )
    try:
        meta = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint file {state_path} cannot be read ({exc}); it is corrupted or truncated: "
            f"{hint}"
        ) from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint file {state_path} is not a JSON object; {hint}")
    _check_version(meta, state_path)
    _check_fields(meta, state_path, hint)
    for name, digest in meta["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} is missing; {hint}")
        if sha256_file(file) != digest:
            raise CheckpointError(
                f"checkpoint file {file} is corrupted or truncated (sha256 mismatch); {hint}"
            )
    return meta


def is_complete(path: Path) -> bool:
    """True when `path` is a checkpoint that `read_checkpoint_meta` accepts."""
    try:
        read_checkpoint_meta(path)
    except CheckpointError:
        return False
    return True


def find_latest(directory: Path) -> Path | None:
    """The highest-step complete checkpoint in `directory`; broken newer ones are logged."""
    for _, path in step_dirs(directory):
        try:
            read_checkpoint_meta(path)
        except CheckpointError as exc:
            log.warning("checkpoint_skipped", path=str(path), reason=str(exc))
            continue
        return path
    return None


def resolve_checkpoint(path: Path) -> Path:
    """The checkpoint a user means by `path`: a `step_<N>` directory (verified as is), a
    `checkpoints/` directory or a run directory (their newest complete checkpoint)."""
    path = Path(path)
    usage = (
        "pass a checkpoint (.../checkpoints/step_N), a checkpoints/ directory or a run directory"
    )
    if not path.is_dir():
        raise CheckpointError(f"{path} does not exist or is not a directory; {usage}")
    if step_of(path) is not None or (path / STATE_FILE).exists():
        read_checkpoint_meta(path)  # an explicit choice fails loudly rather than falling back
        return path
    directory = path / CHECKPOINTS_DIR if (path / CHECKPOINTS_DIR).is_dir() else path
    latest = find_latest(directory)
    if latest is None:
        broken = [p.name for _, p in step_dirs(directory)]
        detail = f" (incomplete or corrupted: {', '.join(broken)})" if broken else ""
        raise CheckpointError(f"no complete checkpoint under {path}{detail}; {usage}")
    return latest


def config_differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON configs, `model.` keys first:
    the quickest explanation of why a checkpoint does not fit a model."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        diffs: list[str] = []
        for key in [*saved, *(k for k in current if k not in saved)]:
            name = f"{prefix}.{key}" if prefix else str(key)
            diffs += config_differences(saved.get(key, _ABSENT), current.get(key, _ABSENT), name)
        return sorted(diffs, key=lambda d: not d.startswith("model.")) if not prefix else diffs
    if saved == current:
        return []
    return [f"{prefix}: {_show(saved)} in the checkpoint, {_show(current)} now"]


def _show(value: Any) -> str:
    return "absent" if value is _ABSENT else json.dumps(value)


def _check_version(meta: Mapping[str, Any], state_path: Path) -> None:
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < OLDEST_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint file {state_path} has no valid format_version ({version!r}); it was "
            "not written by neat's checkpointer"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {state_path.parent} was written by a newer neat (it has format_version "
            f"{version} but this neat reads up to {FORMAT_VERSION}): upgrade neat to load it"
        )


def _check_fields(meta: Mapping[str, Any], state_path: Path, hint: str) -> None:
    expected: dict[str, type | tuple[type, ...]] = {
        "step": int,
        "tokens_seen": int,
        "data_state": dict,
        "rng_state": dict,
        "metrics": dict,
        "best_val_loss": (int, float, type(None)),
        "files": dict,
        "tensor_aliases": dict,
    }
    for key, kind in expected.items():
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(
                f"checkpoint file {state_path} has a missing or invalid {key!r}; {hint}"
            )
    files = meta["files"]
    if MODEL_FILE not in files:
        raise CheckpointError(f"checkpoint file {state_path} lists no {MODEL_FILE}; {hint}")
    for name, digest in files.items():
        # Only plain names: a state.json must not point the loader at files elsewhere.
        plain = bool(name) and Path(name).name == name and name not in {".", "..", STATE_FILE}
        if not plain or not isinstance(digest, str):
            raise CheckpointError(f"checkpoint file {state_path} lists an invalid file {name!r}")
