"""The Byte Latent Transformer (Pagnoni et al., arXiv 2412.09871): entropy patching here; the
model's `BLT` / `BLTConfig` are exported next to these by the module that defines them."""

from neat.models.blt.patching import (
    Patching,
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
    "calibrate_threshold",
    "global_boundaries",
    "load_entropy_model",
    "monotonic_boundaries",
    "next_byte_entropies",
    "patch",
    "patch_lengths",
    "word_start_fraction",
]
