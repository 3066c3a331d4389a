"""The training loop, device handling, multi-process setup, seeding and the run directory."""

from neat.training.device import enable_fast_math, peak_flops, resolve_device
from neat.training.distributed import DistInfo, init_distributed, wrap_model
from neat.training.seeding import seed_everything
from neat.training.trainer import Schedule, Trainer

__all__ = [
    "DistInfo",
    "Schedule",
    "Trainer",
    "enable_fast_math",
    "init_distributed",
    "peak_flops",
    "resolve_device",
    "seed_everything",
    "wrap_model",
]
