"""Checkpoints and RNG state: atomic, verified by sha256, loaded without pickle (except the
index of a sharded DCP checkpoint, PyTorch's format: see neat.persistence.sharded), migrated
from older key layouts; and cleanup."""

from neat.persistence.checkpointer import (
    FORMAT_VERSION,
    Checkpointer,
    is_complete,
    read_checkpoint_meta,
    resolve_checkpoint,
)
from neat.persistence.cleanup import (
    CleanPlan,
    Removal,
    apply_clean,
    format_bytes,
    plan_clean,
)
from neat.persistence.migrations import (
    KeyMigration,
    migrate_state_dict,
    pending_migrations,
    register_migration,
)
from neat.persistence.rng import capture_rng_state, restore_rng_state

__all__ = [
    "FORMAT_VERSION",
    "Checkpointer",
    "CleanPlan",
    "KeyMigration",
    "Removal",
    "apply_clean",
    "capture_rng_state",
    "format_bytes",
    "is_complete",
    "migrate_state_dict",
    "pending_migrations",
    "plan_clean",
    "read_checkpoint_meta",
    "register_migration",
    "resolve_checkpoint",
    "restore_rng_state",
]
