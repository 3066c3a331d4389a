"""Deciding where a run writes and which checkpoint, if any, it continues from."""

from __future__ import annotations

from pathlib import Path

from neat.config.schema import ExperimentConfig
from neat.errors import CheckpointError
from neat.persistence import resolve_checkpoint
from neat.training.run_dir import CHECKPOINTS, has_checkpoint, latest_run_dir, new_run_dir


def resolve_run(
    config: ExperimentConfig, run_dir: Path | None, resume: str | None
) -> tuple[Path, Path | None]:
    """Return (run directory, checkpoint to resume from or None).

    `resume="auto"` makes the same command line idempotent (what torchrun restarts need):
    it continues the newest complete checkpoint of the run, or starts fresh when there is none.
    """
    if resume is None:
        run_dir = run_dir or new_run_dir(config.name)
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
        if not has_checkpoint(run_dir):
            return run_dir, None
        return run_dir, resolve_checkpoint(run_dir)
    checkpoint = resolve_checkpoint(Path(resume))
    if run_dir is None:
        run_dir = checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else None
        run_dir = run_dir or new_run_dir(config.name)
    return run_dir, checkpoint
