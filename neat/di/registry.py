"""Which builder makes each component `type`. Code outside neat extends it with
`register_component`, which also registers the config class so the YAML validates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neat.config.base import ComponentConfig, register_config
from neat.errors import ConfigError

Builder = Callable[..., Any]

# section -> type name -> builder. Builder signatures per section:
#   model(cfg, vocab_size) -> nn.Module
#   source(cfg, config: ExperimentConfig) -> IDataSource
#   tokenizer(cfg, source, cache_dir) -> ITokenizer
#   optimization(cfg, training) -> IOptimizerFactory
#   evaluation(cfg, *, token_data, block_size, batch_size, device, precision) -> IEvaluator
BUILDERS: dict[str, dict[str, Builder]] = {}


def register_builder(section: str, type_name: str, builder: Builder) -> None:
    BUILDERS.setdefault(section, {})[type_name] = builder


def register_component(section: str, config_cls: type[ComponentConfig], builder: Builder) -> None:
    """Add a component type: `section.type: <config_cls.type default>` now validates and builds."""
    register_config(section, config_cls)
    register_builder(section, config_cls.model_fields["type"].default, builder)


def build(section: str, cfg: ComponentConfig, *args: Any, **kwargs: Any) -> Any:
    builders = BUILDERS.get(section, {})
    if cfg.type not in builders:
        known = ", ".join(sorted(builders)) or "none"
        raise ConfigError(f"no builder for {section} type {cfg.type!r}; known types: {known}")
    return builders[cfg.type](cfg, *args, **kwargs)
