"""Errors a user can cause. The CLI turns each into one message and exit code 2."""


class NeatError(Exception):
    """Base for every error caused by user input (config, data, paths, checkpoints)."""


class ConfigError(NeatError):
    """The config file or an override is invalid."""


class DataError(NeatError):
    """The corpus is missing, empty, or too small for the requested batches."""


class CheckpointError(NeatError):
    """A checkpoint is missing, incomplete, corrupted, or belongs to another model."""


class DiskFullError(NeatError):
    """A write failed because the disk, the user's quota or the file size limit is full."""


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C / SIGTERM once the current step finished and a checkpoint was saved."""

    def __init__(self, signum: int, checkpoint: str | None) -> None:
        super().__init__(f"interrupted by signal {signum}; checkpoint: {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; training stops before the bad update is saved."""
