"""The validated experiment config: schema, loading, overrides, migrations, and the one
registry of component types (each type's config class lives beside its implementation)."""

from neat.config.base import (
    ComponentConfig,
    EvaluatorConfig,
    ModelConfig,
    OptimizerConfig,
    PathStr,
    SourceConfig,
    StrictModel,
)
from neat.config.data import DataConfig
from neat.config.loader import apply_override, dump_config, load_config, validate_config
from neat.config.migrations import CURRENT_VERSION, MIGRATIONS
from neat.config.registry import build, known_types, register_component
from neat.config.schema import (
    CheckpointConfig,
    ExperimentConfig,
    MonitoringConfig,
    TrainingConfig,
)

__all__ = [
    "CURRENT_VERSION",
    "MIGRATIONS",
    "CheckpointConfig",
    "ComponentConfig",
    "DataConfig",
    "EvaluatorConfig",
    "ExperimentConfig",
    "ModelConfig",
    "MonitoringConfig",
    "OptimizerConfig",
    "PathStr",
    "SourceConfig",
    "StrictModel",
    "TrainingConfig",
    "apply_override",
    "build",
    "dump_config",
    "known_types",
    "load_config",
    "register_component",
    "validate_config",
]
