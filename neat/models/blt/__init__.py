"""The Byte Latent Transformer (Pagnoni et al., arXiv 2412.09871).

`config` holds `BLTConfig` (`model.type: blt`), `model` the BLT and its builder, `patching`
the entropy patching rules, and `entropy` the frozen entropy model and the patcher it makes.
"""

from neat.models.blt.config import BLTConfig, BLTPatchingConfig
from neat.models.blt.model import BLT, build_blt
from neat.models.blt.patching import (
    Patching,
    boundaries,
    calibrate_threshold,
    global_boundaries,
    monotonic_boundaries,
    next_byte_entropies,
    patch,
    patch_lengths,
    word_start_fraction,
)

__all__ = [
    "BLT",
    "BLTConfig",
    "BLTPatchingConfig",
    "Patching",
    "boundaries",
    "build_blt",
    "calibrate_threshold",
    "global_boundaries",
    "monotonic_boundaries",
    "next_byte_entropies",
    "patch",
    "patch_lengths",
    "word_start_fraction",
]
