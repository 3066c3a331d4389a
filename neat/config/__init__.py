"""The validated experiment config: schema, loading, overrides, migrations."""

from neat.config.base import ComponentConfig, StrictModel, known_types, register_config
from neat.config.data import (
    ByteTokenizerConfig,
    CharTokenizerConfig,
    DataConfig,
    JsonlSourceConfig,
    SourceConfig,
    TextSourceConfig,
)
from neat.config.loader import apply_override, dump_config, load_config, validate_config
from neat.config.migrations import CURRENT_VERSION, MIGRATIONS
from neat.config.schema import (
    AdamWConfig,
    CheckpointConfig,
    ExperimentConfig,
    GPTConfig,
    LossEvaluatorConfig,
    MonitoringConfig,
    TrainingConfig,
)

__all__ = [
    "CURRENT_VERSION",
    "MIGRATIONS",
    "AdamWConfig",
    "ByteTokenizerConfig",
    "CharTokenizerConfig",
    "CheckpointConfig",
    "ComponentConfig",
    "DataConfig",
    "ExperimentConfig",
    "GPTConfig",
    "JsonlSourceConfig",
    "LossEvaluatorConfig",
    "MonitoringConfig",
    "SourceConfig",
    "StrictModel",
    "TextSourceConfig",
    "TrainingConfig",
    "apply_override",
    "dump_config",
    "known_types",
    "load_config",
    "register_config",
    "validate_config",
]
