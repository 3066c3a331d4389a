"""The Byte Latent Transformer (Pagnoni et al., arXiv 2412.09871).

Exported here: entropy patching (`patching`). The model's `BLT` / `BLTConfig` live in
`neat.models.blt.model` / `neat.config.blt`; their owners add them to this list.
"""

from neat.models.blt.patching import (
    Patching,
    boundaries,
    calibrate_threshold,
    global_boundaries,
    load_entropy_model,
    monotonic_boundaries,
    next_byte_entropies,
    patch,
    patch_lengths,
    word_start_fraction,
)

__all__ = [
    "Patching",
    "boundaries",
    "calibrate_threshold",
    "global_boundaries",
    "load_entropy_model",
    "monotonic_boundaries",
    "next_byte_entropies",
    "patch",
    "patch_lengths",
    "word_start_fraction",
]
