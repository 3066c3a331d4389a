"""What makes a checkpoint directory complete, and how to find the newest complete one.

`state.json` is written last and lists every other file with its sha256, so a directory is
trusted only when state.json parses and every listed file hashes as recorded: a save killed
mid-way, a truncated copy or a flipped bit all fail this check and are never resumed from.
state.json also carries the sha256 of its own canonical content, so an edit or a flipped bit
in it is caught too (state files written before that digest existed still load).

"Newest" means the most recently written in the run (`save_seq`, a counter every save
raises), not the highest step: after resuming from an earlier step with other settings, the
branch being continued is newer than the abandoned one's higher steps.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from neat.errors import CheckpointError
from neat.files import sha256_file

__all__ = [
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "DCP_DIR",
    "DCP_METADATA",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "OLDEST_FORMAT_VERSION",
    "STATE_FILE",
    "TOKENIZER_FILE",
    "config_changes",
    "config_differences",
    "find_latest",
    "is_complete",
    "newest_first",
    "read_checkpoint_meta",
    "resolve_checkpoint",
    "save_seq_of",
    "seal_state",
    "step_dirs",
]

log = structlog.get_logger(__name__)

FORMAT_VERSION = 1
# Older versions hold older tensor layouts that neat.persistence.migrations rewrites on load.
OLDEST_FORMAT_VERSION = 0
# The one home of the names of a run's files (the run directory and each checkpoint).
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
CONFIG_FILE = "config.yaml"
TOKENIZER_FILE = "tokenizer.json"
STEP_PREFIX = "step_"
TMP_PREFIX = ".tmp-"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = ".lock"  # in a run directory: held by the process training in it
# checkpoint.format: dcp keeps the tensors in a `dcp/` folder of per-rank shards instead of
# model.safetensors (neat.persistence.sharded); state.json says so under "format".
DCP_DIR = "dcp"
DCP_METADATA = f"{DCP_DIR}/.metadata"  # DCP's index, written last by its coordinator (rank 0)
FORMATS = ("safetensors", "dcp")
STATE_DIGEST = "state_sha256"  # state.json's digest of its own canonical content

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
    except RecursionError:
        raise CheckpointError(
            f"checkpoint file {state_path} is nested too deeply to be a neat state file; it "
            f"was edited or damaged: {hint}"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(
            f"checkpoint file {state_path} cannot be read ({exc}); it is corrupted or truncated: "
            f"{hint}"
        ) from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint file {state_path} is not a JSON object; {hint}")
    _check_version(meta, state_path)
    _check_fields(meta, state_path, hint)
    _check_digest(meta, state_path, hint)
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


def save_seq_of(path: Path) -> int | None:
    """The `save_seq` a checkpoint's state.json records; None when it has none (written
    before neat recorded it) or cannot be read. Unverified: only for ordering."""
    try:
        meta = json.loads((path / STATE_FILE).read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    seq = meta.get("save_seq") if isinstance(meta, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def newest_first(directory: Path) -> list[Path]:
    """`step_<N>` directories, most recently written first (unverified).

    By `save_seq`; checkpoints without one (older neat) come after every one with it, by
    step. An unreadable state.json says nothing about its age: such a directory is placed by
    its step among the others, ahead of the first readable one with a lower step.
    """
    readable: list[tuple[tuple[int, int, int], Path]] = []
    unreadable: list[tuple[int, Path]] = []
    for step, path in step_dirs(directory):
        seq = save_seq_of(path)
        if seq is not None:
            readable.append(((1, seq, step), path))
        elif (path / STATE_FILE).is_file() and _parses(path / STATE_FILE):
            readable.append(((0, 0, step), path))
        else:
            unreadable.append((step, path))
    readable.sort(key=lambda item: item[0], reverse=True)
    ordered = [(key[2], path) for key, path in readable]
    for step, path in unreadable:  # step_dirs gives them highest step first
        at = next((i for i, (s, _) in enumerate(ordered) if s < step), len(ordered))
        ordered.insert(at, (step, path))
    return [path for _, path in ordered]


def _parses(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_bytes()), dict)
    except (OSError, ValueError, RecursionError):
        return False


def find_latest(directory: Path) -> Path | None:
    """The most recently written complete checkpoint in `directory` (see `newest_first`);
    broken newer ones are logged."""
    for path in newest_first(directory):
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


def seal_state(meta: Mapping[str, Any]) -> dict[str, Any]:
    """`meta` with the digest of its own canonical content, which `read_checkpoint_meta`
    verifies: the other files have their sha256 in state.json, and this covers state.json."""
    # as plain JSON values first (numpy scalars become numbers), exactly as a reader sees them
    text = json.dumps({k: v for k, v in meta.items() if k != STATE_DIGEST}, default=_number)
    sealed: dict[str, Any] = json.loads(text)
    sealed[STATE_DIGEST] = _state_digest(sealed)
    return sealed


def _number(value: object) -> Any:
    # numpy scalars (a data position, a metric) are lossless as Python numbers; anything
    # else would need pickle: TypeError, as json.dumps gives
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _state_digest(meta: Mapping[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != STATE_DIGEST}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _check_digest(meta: Mapping[str, Any], state_path: Path, hint: str) -> None:
    if STATE_DIGEST not in meta:
        return  # written before neat sealed state files
    if meta[STATE_DIGEST] != _state_digest(meta):
        raise CheckpointError(
            f"checkpoint file {state_path} was modified after it was written or is damaged "
            f"(its {STATE_DIGEST} does not match its content); {hint}"
        )


def config_changes(saved: Any, current: Any) -> list[str]:
    """`key: old -> new` for every dotted key whose value differs (`model.` keys first)."""
    return [f"{key}: {old} -> {new}" for key, old, new in _differences(saved, current, "")]


def config_differences(saved: Any, current: Any) -> list[str]:
    """Dotted keys whose values differ between two JSON configs, `model.` keys first:
    the quickest explanation of why a checkpoint does not fit a model."""
    return [
        f"{key}: {old} in the checkpoint, {new} now"
        for key, old, new in _differences(saved, current, "")
    ]


def _differences(saved: Any, current: Any, prefix: str) -> list[tuple[str, str, str]]:
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        diffs: list[tuple[str, str, str]] = []
        for key in [*saved, *(k for k in current if k not in saved)]:
            name = f"{prefix}.{key}" if prefix else str(key)
            diffs += _differences(saved.get(key, _ABSENT), current.get(key, _ABSENT), name)
        return sorted(diffs, key=lambda d: not d[0].startswith("model.")) if not prefix else diffs
    if saved == current:
        return []
    return [(prefix, _show(saved), _show(current))]


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


# What a resume needs besides the weights; a weights-only checkpoint (written by hand, or
# by a tool that merges weights) may leave these out and still load for eval and generate.
TRAINING_FIELDS: dict[str, type | tuple[type, ...]] = {
    "step": int,
    "tokens_seen": int,
    "data_state": dict,
    "rng_state": dict,
    "metrics": dict,
}
_OPTIONAL_FIELDS: dict[str, type | tuple[type, ...]] = {
    **TRAINING_FIELDS,
    "best_val_loss": (int, float, type(None)),
    "tracker": dict,
    "tensor_aliases": dict,
    "config": (dict, type(None)),
    "save_seq": int,
    "parent": (str, type(None)),
    STATE_DIGEST: str,
    "format": str,
}


def _check_fields(meta: Mapping[str, Any], state_path: Path, hint: str) -> None:
    files = meta.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(
            f"checkpoint file {state_path} has a missing or invalid 'files'; {hint}"
        )
    for key, kind in _OPTIONAL_FIELDS.items():
        if key in meta and not _is(meta[key], kind):
            raise CheckpointError(
                f"checkpoint file {state_path} has an invalid {key!r} "
                f"({type(meta[key]).__name__}); {hint}"
            )
    layout = meta.get("format", "safetensors")
    if layout not in FORMATS:
        raise CheckpointError(
            f"checkpoint file {state_path} has the unknown format {layout!r}; it was written "
            "by a newer neat: upgrade neat to load it"
        )
    index = DCP_METADATA if layout == "dcp" else MODEL_FILE
    if index not in files:
        raise CheckpointError(f"checkpoint file {state_path} lists no {index}; {hint}")
    for name, digest in files.items():
        if not _listable(name, sharded=layout == "dcp") or not isinstance(digest, str):
            raise CheckpointError(f"checkpoint file {state_path} lists an invalid file {name!r}")
    for alias, stored in meta.get("tensor_aliases", {}).items():
        if not isinstance(stored, str):
            raise CheckpointError(
                f"checkpoint file {state_path} has an invalid tensor alias {alias!r}; {hint}"
            )


def _listable(name: Any, sharded: bool) -> bool:
    """Only plain names (and, in a DCP checkpoint, plain names in its dcp/ folder): a
    state.json must not point the loader at files elsewhere."""
    if not isinstance(name, str) or not name:
        return False
    folder, _, rest = name.rpartition("/")
    if folder and not (sharded and folder == DCP_DIR):
        return False
    return Path(rest).name == rest and rest not in {"", ".", "..", STATE_FILE}


def check_training_fields(meta: Mapping[str, Any], path: Path) -> None:
    """A resume needs the step, data position and RNG state, which a weights-only
    checkpoint may lack: say so rather than start from step 0 without them."""
    missing = [key for key in TRAINING_FIELDS if key not in meta]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} holds weights only ({path / STATE_FILE} has no "
            f"{', '.join(missing)}): it cannot be resumed; use it as model.init_from, or "
            "resume from a checkpoint saved during training"
        )


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    # JSON true/false are Python bools, which are ints: never a valid step or count
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)
