"""The training loop, device handling, seeding and the run directory."""

from neat.training.device import enable_fast_math, peak_flops, resolve_device
from neat.training.seeding import seed_everything
from neat.training.trainer import Schedule, Trainer

__all__ = [
    "Schedule",
    "Trainer",
    "enable_fast_math",
    "peak_flops",
    "resolve_device",
    "seed_everything",
]
