"""Titans (Behrouz, Zhong & Mirrokni 2025, "Titans: Learning to Memorize at Test Time").

`config` holds `TitansConfig` (`model.type: titans`), `memory` the neural long-term memory,
`attention` the segment attention with persistent tokens, `model` the three architectures.
"""

from neat.models.titans.config import MemoryConfig, TitansConfig
from neat.models.titans.memory import MemoryState, NeuralMemory
from neat.models.titans.model import Titans, TitansBlock, TitansState, build_titans

__all__ = [
    "MemoryConfig",
    "MemoryState",
    "NeuralMemory",
    "Titans",
    "TitansBlock",
    "TitansConfig",
    "TitansState",
    "build_titans",
]
