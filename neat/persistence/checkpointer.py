"""Atomic, verified, pickle-free checkpoints in `checkpoints/step_<N>/` directories.

A save writes everything into a hidden `.tmp-step_<N>-<pid>/` directory, fsyncs each file,
writes `state.json` (with every file's sha256) last, then renames the directory into place
and fsyncs the parent. A crash at any point leaves either the old set of checkpoints or the
new one, never a half-written `step_<N>` that could be resumed from.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog
import torch

from neat.config.loader import validate_config
from neat.errors import CheckpointError, ConfigError, NeatError
from neat.files import fsync_dir, fsync_file, pid_alive, sha256_file, write_json_atomic
from neat.interfaces import ITokenizer
from neat.interfaces.records import TrainState
from neat.persistence import files
from neat.persistence.compat import check_tokenizer_matches
from neat.persistence.manifest import (
    FORMAT_VERSION,
    FORMATS,
    MODEL_FILE,
    OPTIMIZER_JSON,
    OPTIMIZER_TENSORS,
    STATE_FILE,
    STEP_PREFIX,
    TMP_PREFIX,
    check_training_fields,
    config_changes,
    config_differences,
    find_latest,
    is_complete,
    newest_first,
    read_checkpoint_meta,
    resolve_checkpoint,
    save_seq_of,
    seal_state,
)
from neat.persistence.migrations import migrator_for
from neat.persistence.rng import check_rng_states
from neat.persistence.sharded import load_sharded, save_sharded
from neat.persistence.tensors import load_model, load_optimizer, save_model, save_optimizer

__all__ = [
    "FORMAT_VERSION",
    "Checkpointer",
    "is_complete",
    "read_checkpoint_meta",
    "resolve_checkpoint",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")

_REPLACED_PREFIX = f"{TMP_PREFIX}replaced-"
_RESERVED = {STATE_FILE, MODEL_FILE, OPTIMIZER_TENSORS, OPTIMIZER_JSON}
_RESUME_TOKENIZER_FIX = (
    "resume with the data and tokenizer settings the run was trained with, or start a new "
    "run from these weights with model.init_from (and training.init_from_tokenizer: ignore)"
)
# A full disk, a full quota and a file-size limit (RLIMIT_FSIZE) all mean: no room to save.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class Checkpointer:
    """Saves and restores training state under one run's `checkpoints/` directory.

    `metadata` (typically the resolved config) is stored in every state.json under "config",
    so a checkpoint documents how it was made and a shape mismatch can name the config keys
    that differ. Loading never unpickles: tensors come from safetensors, the rest from JSON.

    In multi-process training every rank calls `save` (gathering a sharded model is a
    collective) but only the one built with `writer=True` (rank 0) touches the disk; the
    others return the path it writes. With `layout="dcp"` every rank writes its own shards
    (neat.persistence.sharded) into the staging directory rank 0 made, and rank 0 alone
    writes state.json (every rank's files with their sha256) and renames it into place:
    the same atomicity, no rank gathering the model. `group` (a gloo group under torchrun)
    carries the small agreements that needs.

    `tokenizer` (the run's) is compared with a checkpoint's own before a resume: a run
    continued with another mapping of token ids would train on garbage without a word.
    """

    def __init__(
        self,
        directory: Path,
        keep_last: int = 2,
        metadata: Mapping[str, Any] | None = None,
        writer: bool = True,
        tokenizer: ITokenizer | None = None,
        layout: str = "safetensors",
        group: Any = None,
    ) -> None:
        if keep_last < 1:
            raise ConfigError(f"checkpoint keep_last must be at least 1, got {keep_last}")
        if layout not in FORMATS:
            raise ConfigError(f"checkpoint.format: unknown format {layout!r}; use {FORMATS}")
        self.layout = layout
        self.group = group
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.metadata = dict(metadata) if metadata is not None else None
        self.writer = writer
        self.tokenizer = tokenizer
        self._swept = False
        self._known_complete: dict[str, int] = {}  # dir name -> state.json mtime_ns
        self._seq: int | None = None  # the save_seq of this run's newest checkpoint
        self._parent: str | None = None  # the checkpoint the next save continues
        self.protected: str | None = None  # a directory name retention never deletes
        if self.writer and self.directory.is_dir():
            self._sweep_leftovers()

    def save(
        self,
        state: TrainState,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        extra_files: Mapping[str, Path] | None = None,
    ) -> Path:
        """Write `step_<state.step>/` atomically, apply retention, return its path."""
        if self.layout == "dcp":
            return self._save_sharded(state, model, optimizer, extra_files or {})
        if not self.writer:
            save_model(model, None)
            if optimizer is not None:
                save_optimizer(optimizer, None, None)
            return self.directory / f"{STEP_PREFIX}{state.step}"
        started = time.perf_counter()
        final = self.directory / f"{STEP_PREFIX}{state.step}"
        tmp = self.directory / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
        with self._disk_errors(final):
            if not self.directory.is_dir():
                self.directory.mkdir(parents=True, exist_ok=True)
                fsync_dir(self.directory.parent)
            if not self._swept:
                self._sweep_leftovers()
            files.remove_tree_quietly(tmp)
            tmp.mkdir()
            try:
                self._write(tmp, state, model, optimizer, extra_files or {})
                self._publish(tmp, final)
            except BaseException:
                files.remove_tree_quietly(tmp)
                raise
        self._parent = final.name
        self._known_complete[final.name] = (final / STATE_FILE).stat().st_mtime_ns
        self._apply_retention(final)
        log.debug(
            "checkpoint_saved",
            path=str(final),
            step=state.step,
            seconds=round(time.perf_counter() - started, 3),
        )
        return final

    def _save_sharded(
        self,
        state: TrainState,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        extra_files: Mapping[str, Path],
    ) -> Path:
        """checkpoint.format dcp: rank 0 makes the staging directory and tells the others
        its name, every rank writes its shards there and hashes them, rank 0 collects the
        hashes, writes state.json last and publishes. A failure on any rank fails them all
        (DCP's own collectives, then the hash gather) and leaves only a .tmp- directory."""
        started = time.perf_counter()
        final = self.directory / f"{STEP_PREFIX}{state.step}"
        tmp: Path | None = None
        failure: str | None = None
        if self.writer:
            tmp = self.directory / f"{TMP_PREFIX}{final.name}-{os.getpid()}"
            try:
                with self._disk_errors(final):
                    if not self.directory.is_dir():
                        self.directory.mkdir(parents=True, exist_ok=True)
                        fsync_dir(self.directory.parent)
                    if not self._swept:
                        self._sweep_leftovers()
                    files.remove_tree_quietly(tmp)
                    tmp.mkdir()
            except CheckpointError as exc:
                failure = str(exc)
        where, failure = _from_rank_zero((str(tmp) if tmp else "", failure), self.group)
        if failure is not None:
            raise CheckpointError(failure)
        tmp = Path(where)
        try:
            with self._disk_errors(final):
                hashes = save_sharded(model, optimizer, tmp)
            every = _gathered(hashes, self.group)
            if not self.writer:
                return final
            with self._disk_errors(final):
                names = [name for part in every for name in part]
                self._seal(
                    tmp,
                    state,
                    names,
                    extra_files,
                    shards=every,
                    sharded_optimizer=optimizer is not None,
                )
                self._publish(tmp, final)
        except BaseException:
            if self.writer:
                files.remove_tree_quietly(tmp)
            raise
        self._parent = final.name
        self._known_complete[final.name] = (final / STATE_FILE).stat().st_mtime_ns
        self._apply_retention(final)
        log.debug(
            "checkpoint_saved",
            path=str(final),
            step=state.step,
            format="dcp",
            seconds=round(time.perf_counter() - started, 3),
        )
        return final

    def latest(self) -> Path | None:
        """The most recently written complete checkpoint; corrupt newer ones are skipped
        with a warning."""
        return find_latest(self.directory)

    @contextmanager
    def _disk_errors(self, final: Path) -> Iterator[None]:
        """An OSError while saving (a full disk, a read-only folder) is the user's to fix:
        one message that names the folder; the checkpoints already saved stay intact."""
        try:
            yield
        except OSError as exc:
            where = self.directory
            intact = self._last_complete_hint()
            if exc.errno in _NO_SPACE:
                raise CheckpointError(
                    f"no space left to save checkpoint {final.name} in {where} "
                    f"({exc.strerror or exc}); nothing of it was kept. {intact} Free some "
                    "space (or lower checkpoint.keep_last), then resume with --resume auto"
                ) from None
            raise CheckpointError(
                f"cannot save checkpoint {final.name} in {where} ({exc.strerror or exc}); "
                f"nothing of it was kept. {intact}"
            ) from None

    def _last_complete_hint(self) -> str:
        latest = find_latest(self.directory)
        if latest is None:
            return "No earlier checkpoint exists."
        return f"The last complete checkpoint, {latest}, is intact."

    def load(
        self,
        path: Path,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> TrainState:
        """Verify the checkpoint at `path`, load it into `model` (and `optimizer`).

        RNG state is returned in the TrainState, not applied: the trainer decides when.
        Use `resolve_checkpoint` first to accept a run or checkpoints directory.
        """
        path = Path(path)
        meta = read_checkpoint_meta(path)
        state_path = path / STATE_FILE
        sharded = meta.get("format") == "dcp"
        if optimizer is not None:  # a resume: the training state must all be there
            check_training_fields(meta, path)
            if sharded:
                has_optimizer = bool(meta.get("dcp", {}).get("optimizer"))
            else:
                has_optimizer = OPTIMIZER_TENSORS in meta["files"] and (
                    OPTIMIZER_JSON in meta["files"]
                )
            if not has_optimizer:
                raise CheckpointError(
                    f"checkpoint {path} holds no optimizer state; load it without an optimizer "
                    "(e.g. for evaluation, or as model.init_from) or resume from a checkpoint "
                    "saved during training"
                )
            if meta["rng_state"]:
                check_rng_states(meta["rng_state"], str(state_path))
            if self.tokenizer is not None:
                check_tokenizer_matches(path, self.tokenizer, fix=_RESUME_TOKENIZER_FIX)
        version = meta["format_version"]
        if optimizer is not None and version < FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {path} has the older format_version {version}: its weights are "
                "migrated on load but its optimizer state (keyed by parameter order) is not; "
                "load it without an optimizer, e.g. as model.init_from"
            )
        reason = self._mismatch_reason(meta)
        if sharded:  # every rank reads its own shards, resharded to this world size
            load_sharded(model, optimizer, path, reason)
        else:
            migrate = migrator_for(version, str(path))
            aliases = meta.get("tensor_aliases", {})
            load_model(model, path / MODEL_FILE, aliases, reason, migrate)
            if optimizer is not None:
                skeleton = _read_json(path / OPTIMIZER_JSON)
                load_optimizer(optimizer, skeleton, path / OPTIMIZER_TENSORS)
        if optimizer is not None:
            self._warn_config_changes(meta, path)
            self._parent = path.name if path.parent == self.directory else str(path)
        log.info("checkpoint_loaded", path=str(path), step=meta.get("step", 0))
        return TrainState(
            step=meta.get("step", 0),
            tokens_seen=meta.get("tokens_seen", 0),
            data_state=meta.get("data_state", {}),
            rng_state=meta.get("rng_state", {}),
            metrics=meta.get("metrics", {}),
            best_val_loss=meta.get("best_val_loss"),
            tracker=meta.get("tracker", {}),
        )

    def _warn_config_changes(self, meta: Mapping[str, Any], path: Path) -> None:
        """Resuming with other settings is allowed (a new lr, more steps) but never silent."""
        saved = meta.get("config")
        if not isinstance(saved, Mapping) or self.metadata is None:
            return
        # keys added since the checkpoint was written take their defaults: no change
        with contextlib.suppress(NeatError):  # else compare what was saved as it is
            saved = validate_config(saved, source=str(path)).model_dump(mode="json")
        changes = config_changes(saved, self.metadata)
        if changes:
            log.warning(
                f"resuming {path} with a config that differs from the checkpoint's: "
                + "; ".join(changes),
                checkpoint=str(path),
                changes=changes,
            )

    def _write(
        self,
        tmp: Path,
        state: TrainState,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        extra_files: Mapping[str, Path],
    ) -> None:
        aliases = save_model(model, tmp / MODEL_FILE)
        written = [MODEL_FILE]
        if optimizer is not None:
            save_optimizer(optimizer, tmp / OPTIMIZER_TENSORS, tmp / OPTIMIZER_JSON)
            written += [OPTIMIZER_TENSORS, OPTIMIZER_JSON]
        self._seal(tmp, state, written, extra_files, aliases=aliases)

    def _seal(
        self,
        tmp: Path,
        state: TrainState,
        written: list[str],
        extra_files: Mapping[str, Path],
        aliases: dict[str, str] | None = None,
        shards: list[dict[str, str]] | None = None,
        sharded_optimizer: bool = False,
    ) -> None:
        """Copy the extra files, hash what is not hashed yet, write state.json last.
        `shards`: each rank's {file: sha256} of a DCP save (already fsynced and hashed)."""
        written = list(written)
        for name, source in extra_files.items():
            _check_extra_name(name)
            files.copy_file(Path(source), tmp / name)
            written.append(name)
        known = {name: digest for part in shards or [] for name, digest in part.items()}
        hashes = {}
        for name in written:
            if name in known:
                hashes[name] = known[name]
                continue
            fsync_file(tmp / name)
            hashes[name] = sha256_file(tmp / name)
        manifest = {
            "format_version": FORMAT_VERSION,
            "step": state.step,
            "tokens_seen": state.tokens_seen,
            "data_state": state.data_state,
            "rng_state": state.rng_state,
            "metrics": state.metrics,
            "best_val_loss": state.best_val_loss,
            "tracker": state.tracker,
            "config": self.metadata,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch_version": torch.__version__,
            "save_seq": self._next_seq(),
            "parent": self._parent,
            "files": hashes,
        }
        if shards is None:
            manifest["tensor_aliases"] = aliases or {}
        else:
            manifest["format"] = "dcp"
            manifest["dcp"] = {"world_size": len(shards), "optimizer": sharded_optimizer}
        try:
            sealed = seal_state(manifest)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"the training state of step {state.step} cannot be stored as JSON ({exc}); "
                "data_state, rng_state, metrics and the config must hold only JSON values"
            ) from exc
        write_json_atomic(tmp / STATE_FILE, sealed)  # last: it marks the rest complete
        fsync_dir(tmp)

    def _next_seq(self) -> int:
        """One more than any checkpoint in the folder has: saves are ordered by when they
        happened, whatever their step (see manifest.newest_first)."""
        if self._seq is None:
            found = (save_seq_of(path) for path in newest_first(self.directory))
            self._seq = max((seq for seq in found if seq is not None), default=0)
        self._seq += 1
        return self._seq

    def _publish(self, tmp: Path, final: Path) -> None:
        # A directory cannot be renamed over a non-empty one, so an existing checkpoint of the
        # same step is moved aside first and put back if the rename fails.
        aside = None
        if final.exists():
            aside = self.directory / f"{_REPLACED_PREFIX}{final.name}-{os.getpid()}"
            files.remove_tree_quietly(aside)
            os.replace(final, aside)
        try:
            os.replace(tmp, final)
        except BaseException:
            if aside is not None:
                os.replace(aside, final)
            raise
        fsync_dir(self.directory)
        if aside is not None:
            files.remove_tree(aside, reason="replaced by a new save of the same step")

    def _apply_retention(self, just_saved: Path) -> None:
        """Keep the newest `keep_last` complete checkpoints and delete everything older.

        Newest by when they were written (save_seq), not by step: after resuming from an
        earlier step, the branch being continued is kept and the abandoned higher steps go.
        Broken directories newer than the kept ones are left for inspection; latest() skips
        them.
        """
        kept = 0
        for path in newest_first(self.directory):
            if path.name == self.protected:
                continue  # checkpoint.keep_best: the best one stays whatever its age
            if path == just_saved:
                kept += 1
            elif kept >= self.keep_last:
                files.remove_tree(path, reason=f"retention keeps the newest {self.keep_last}")
            elif self._complete(path):
                kept += 1

    def _complete(self, path: Path) -> bool:
        # Hashing every kept checkpoint on every save would cost more than the save itself;
        # one verification per directory and process is enough to decide what to delete.
        try:
            mtime = (path / STATE_FILE).stat().st_mtime_ns
        except OSError:
            return False
        if self._known_complete.get(path.name) == mtime:
            return True
        if not is_complete(path):
            return False
        self._known_complete[path.name] = mtime
        return True

    def _sweep_leftovers(self) -> None:
        """Remove `.tmp-*` directories of saves that crashed (never those of a live process)."""
        self._swept = True
        for path in sorted(self.directory.glob(f"{TMP_PREFIX}*")):
            pid = _owner_pid(path.name)
            if pid is not None and pid != os.getpid() and pid_alive(pid):
                log.info("checkpoint_tmp_in_use", path=str(path), pid=pid)
                continue
            if path.name.startswith(_REPLACED_PREFIX) and _restore_replaced(path):
                continue
            files.remove_tree(path, reason="left over from an interrupted save")

    def _mismatch_reason(self, meta: Mapping[str, Any]) -> str:
        reason = "the checkpoint was saved with a different model config"
        saved = meta.get("config")
        if not isinstance(saved, Mapping) or self.metadata is None:
            return reason
        diffs = config_differences(saved, self.metadata)
        return f"{reason} ({'; '.join(diffs[:5])})" if diffs else reason


def _from_rank_zero(value: T, group: Any) -> T:
    """Rank 0's `value` on every rank of `group` (itself without a process group)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def _gathered(value: T, group: Any) -> list[T]:
    """Every rank's `value`, in rank order (a list of one without a process group)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return [value]
    every: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(every, value, group=group)
    return every


def _restore_replaced(path: Path) -> bool:
    """A crash between moving `step_N` aside and renaming its replacement in leaves only the
    aside copy: put it back rather than lose the checkpoint."""
    original = path.parent / path.name.removeprefix(_REPLACED_PREFIX).rsplit("-", 1)[0]
    if original.exists() or not is_complete(path):
        return False
    os.replace(path, original)
    log.warning("checkpoint_restored", path=str(original), source=str(path))
    return True


def _owner_pid(name: str) -> int | None:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _check_extra_name(name: str) -> None:
    plain = bool(name) and Path(name).name == name and not name.startswith(".")
    if not plain or name in _RESERVED:
        raise CheckpointError(
            f"extra checkpoint file name {name!r} is invalid: use a plain file name that is "
            f"not one of {sorted(_RESERVED)}"
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(
            f"checkpoint file {path} cannot be read ({exc}); it is corrupted or truncated: "
            f"delete {path.parent} or resume from an earlier checkpoint"
        ) from exc
