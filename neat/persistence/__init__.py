"""Checkpoints and RNG state: atomic, verified by sha256, and loaded without pickle."""

from neat.persistence.checkpointer import (
    FORMAT_VERSION,
    Checkpointer,
    is_complete,
    read_checkpoint_meta,
    resolve_checkpoint,
)
from neat.persistence.rng import capture_rng_state, restore_rng_state

__all__ = [
    "FORMAT_VERSION",
    "Checkpointer",
    "capture_rng_state",
    "is_complete",
    "read_checkpoint_meta",
    "resolve_checkpoint",
    "restore_rng_state",
]
