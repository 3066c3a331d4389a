"""The component registry: for each section and `type`, the config class that validates it
and the builder that makes it. One table serves validation and construction alike.

A component type lives in one file: its implementation, its config class (a
`ComponentConfig` whose `type` default is the name) and its builder, registered at the
bottom with `register_component`. neat's own types are found through `BUILTIN_MODULES`,
imported the first time a section is looked up, so validating a config imports only the
sections it uses. Code outside neat calls `register_component` itself (`neat.register_component`),
or, as an installed package, names its registering module in the `neat.components` entry-point
group so that `neat train` finds it too.

Builders take their own config and the section's small typed context
(`neat.interfaces.contexts`), never the whole experiment config:

    section        builder(cfg, ctx) -> ...
    model          ModelContext -> nn.Module (an IModel)
    source         SourceContext -> IDataSource
    tokenizer      TokenizerContext -> ITokenizer
    optimization   OptimizerContext -> IOptimizerFactory
    evaluation     EvaluatorContext -> IEvaluator
    monitor        MonitorContext -> IMonitor
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, SerializeAsAny, ValidationInfo

from neat.config.base import (
    ComponentConfig,
    EvaluatorConfig,
    ModelConfig,
    OptimizerConfig,
    Section,
    SourceConfig,
)
from neat.errors import ConfigError

__all__ = [
    "BUILTIN_MODULES",
    "DEFAULT_TYPES",
    "Component",
    "build",
    "component",
    "component_of",
    "config_class",
    "default_config",
    "known_types",
    "register_component",
]

Builder = Callable[[Any, Any], Any]

# Where neat's own component types live, per section (imported on first lookup).
BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "model": (
        "neat.models.gpt",
        "neat.models.blt",
        "neat.models.titans",
        "neat.models.vq",
        "neat.models.unified",
        "neat.models.bi_encoder",
    ),
    "source": (
        "neat.data.sources",
        "neat.data.synthetic_math",
        "neat.data.grid_world",
        "neat.data.double_integrator",
        "neat.indexing.source",
        "neat.indexing.pair_data",
    ),
    "tokenizer": ("neat.data.tokenizers",),
    "optimization": ("neat.optimization.adamw", "neat.optimization.muon"),
    "evaluation": (
        "neat.evaluation.evaluator",
        "neat.evaluation.exact_match",
        "neat.evaluation.grid_reasoning",
        "neat.evaluation.vq_reconstruction",
        "neat.evaluation.control_format",
        "neat.indexing.pair_data",
    ),
    "monitor": (
        "neat.monitoring.console",
        "neat.monitoring.structlog_monitor",
        "neat.monitoring.metrics_file",
        "neat.monitoring.report_monitor",
        "neat.monitoring.tensorboard_monitor",
    ),
    "reward": ("neat.training.rewards",),
}

# The type a section takes when the config does not name one.
DEFAULT_TYPES: dict[str, str] = {
    "model": "gpt",
    "source": "text",
    "tokenizer": "char",
    "optimization": "adamw",
    "evaluation": "lm",
}

# Sections whose config classes must derive from a shared base (the loop reads its fields).
_BASES: dict[str, type[ComponentConfig]] = {
    "model": ModelConfig,
    "source": SourceConfig,
    "optimization": OptimizerConfig,
    "evaluation": EvaluatorConfig,
}


@dataclass(frozen=True)
class Component:
    config: type[ComponentConfig]
    build: Builder


_REGISTRY: dict[str, dict[str, Component]] = {}
_loaded: set[str] = set()

# Installed packages add component types by naming a module in this entry-point group, e.g.
# `[project.entry-points."neat.components"] mine = "my_package.neat_types"` in pyproject.toml.
ENTRY_POINT_GROUP = "neat.components"


def register_component(
    section: str, config_cls: type[ComponentConfig], builder: Builder, *, replace: bool = False
) -> None:
    """Make `section.type: <config_cls.type default>` validate with `config_cls` and build
    with `builder(cfg, ctx)`. Refuses to shadow a registered type unless `replace`."""
    type_name = config_cls.model_fields["type"].default
    if not isinstance(type_name, str) or not type_name:
        raise TypeError(f"{config_cls.__name__}.type needs a string default naming the type")
    base = _BASES.get(section)
    if base is not None and not issubclass(config_cls, base):
        raise TypeError(
            f"{config_cls.__name__} must derive from neat.config.{base.__name__} "
            f"to be a {section} type"
        )
    entries = _REGISTRY.setdefault(section, {})
    existing = entries.get(type_name)
    if existing is not None and not replace and existing.config is not config_cls:
        raise ValueError(
            f"{section} type {type_name!r} is already registered ({existing.config.__name__}); "
            "pass replace=True to swap it"
        )
    entries[type_name] = Component(config_cls, builder)


def _load_builtins(section: str) -> None:
    if section in _loaded:
        return
    if not _loaded:  # the first lookup of any section also loads the installed plugins
        _loaded.add(section)
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            importlib.import_module(entry.value)
    _loaded.add(section)
    for module in BUILTIN_MODULES.get(section, ()):
        importlib.import_module(module)


def known_types(section: str) -> list[str]:
    _load_builtins(section)
    return sorted(_REGISTRY.get(section, {}))


def component_of(section: str, type_name: str) -> Component | None:
    entries = _REGISTRY.get(section, {})
    if type_name not in entries:
        _load_builtins(section)
    return _REGISTRY.get(section, {}).get(type_name)


def config_class(section: str, type_name: str) -> type[ComponentConfig] | None:
    found = component_of(section, type_name)
    return found.config if found is not None else None


def default_type(section: str) -> str | None:
    return DEFAULT_TYPES.get(section)


def default_config(section: str) -> Any:
    """The section's default type with all its defaults (the value of an absent section)."""
    type_name = DEFAULT_TYPES[section]
    cls = config_class(section, type_name)
    if cls is None:
        raise ConfigError(f"the default {section} type {type_name!r} is not registered")
    return cls.model_validate({"type": type_name})


def build(section: str, cfg: ComponentConfig, ctx: Any) -> Any:
    """Make the component `cfg` names, with the section's context."""
    found = component_of(section, cfg.type)
    if found is None:
        raise ConfigError(
            f"unknown {section} type {cfg.type!r}; known types: "
            f"{', '.join(known_types(section)) or 'none'}"
        )
    return found.build(cfg, ctx)


def _dispatch(section: str) -> Callable[[Any, ValidationInfo], Any]:
    def validate(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, ComponentConfig):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping with a 'type' key, got {type(value).__name__}")
        type_name = value.get("type", default_type(section))
        cls = config_class(section, str(type_name))
        if cls is None:
            raise ValueError(
                f"unknown {section} type {type_name!r}; "
                f"known types: {', '.join(known_types(section))}"
            )
        return cls.model_validate(value, context=info.context)

    return validate


def component(section: str) -> Any:
    """The annotation of a component field: validated by the class its `type` names."""
    return Annotated[
        SerializeAsAny[ComponentConfig], BeforeValidator(_dispatch(section)), Section(section)
    ]
