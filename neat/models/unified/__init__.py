"""Project NEAT's unified model (`model.type: neat`): BLT, Titans, SVF and MVoT in one model,
each on or off. `config` holds the sections, `model` the builder; `neat.config.components`
checks which combinations can work with the rest of an experiment."""

from neat.models.unified.config import COMPONENTS, NEATComponents, NEATConfig
from neat.models.unified.model import backbone_config, build_neat

__all__ = ["COMPONENTS", "NEATComponents", "NEATConfig", "backbone_config", "build_neat"]
