"""Deciding where a run writes and which checkpoint, if any, it continues from."""

from __future__ import annotations

from pathlib import Path

from neat.config.schema import ExperimentConfig
from neat.errors import CheckpointError
from neat.persistence import read_checkpoint_meta, resolve_checkpoint
from neat.persistence.manifest import CHECKPOINTS_DIR
from neat.training.distributed import torchrun_env
from neat.training.run_dir import check_run_dir_free, has_checkpoint, latest_run_dir, new_run_dir


def resolve_run(
    config: ExperimentConfig, run_dir: Path | None, resume: str | None
) -> tuple[Path, Path | None]:
    """Return (run directory, checkpoint to resume from or None).

    `resume="auto"` makes the same command line idempotent (what torchrun restarts need):
    it continues the newest complete checkpoint of the run, or starts fresh when there is none.
    Fails before anything is read or written when another process trains in the run
    directory, or when the checkpoint is already past `training.max_steps`.
    """
    run_dir, checkpoint = _resolve(config, run_dir, resume)
    if checkpoint is not None:
        _check_steps_left(config, checkpoint)
    return run_dir, checkpoint


def _resolve(
    config: ExperimentConfig, run_dir: Path | None, resume: str | None
) -> tuple[Path, Path | None]:
    if resume is None:
        run_dir = run_dir or new_run_dir(config.name)
        _check_free(run_dir)  # "in use" explains more than "holds checkpoints"
        if has_checkpoint(run_dir):
            raise CheckpointError(
                f"run directory {run_dir} already holds checkpoints; pass --resume auto to "
                "continue it, or choose another --run-dir"
            )
        return run_dir, None
    if resume == "auto":
        if run_dir is None:
            run_dir = latest_run_dir(config.name)
            if run_dir is None:
                return new_run_dir(config.name), None
        _check_free(run_dir)  # its newest checkpoint may be half-way through a save
        if not has_checkpoint(run_dir):
            return run_dir, None
        return run_dir, resolve_checkpoint(run_dir)
    checkpoint = resolve_checkpoint(Path(resume))
    if run_dir is None:
        run_dir = checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS_DIR else None
        run_dir = run_dir or new_run_dir(config.name)
    _check_free(run_dir)
    return run_dir, checkpoint


def _check_free(run_dir: Path) -> None:
    env = torchrun_env()
    if env is None or env[0] == 0:  # rank 0 takes the lock, so only it can find it held
        check_run_dir_free(run_dir)


def _check_steps_left(config: ExperimentConfig, checkpoint: Path) -> None:
    """A checkpoint past max_steps would 'complete' at once and report step 60/30."""
    step = read_checkpoint_meta(checkpoint).get("step", 0)
    max_steps = config.training.max_steps
    if isinstance(step, int) and step > max_steps:
        raise CheckpointError(
            f"checkpoint {checkpoint} is at step {step}, beyond training.max_steps={max_steps}: "
            f"raise training.max_steps above {step} (e.g. --set training.max_steps="
            f"{step + max_steps}) to train on from it"
        )
