"""Base classes and the type registry behind every component section of the config."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, SerializeAsAny, ValidationInfo


class StrictModel(BaseModel):
    """Unknown keys are errors and validated configs never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ComponentConfig(StrictModel):
    """A section whose `type` picks the implementation (a model, a data source, ...)."""

    type: str


# section name -> type name -> config class. Code outside neat extends it through
# `register_config` (or `neat.di.register_component`, which also registers the builder).
_CONFIG_TYPES: dict[str, dict[str, type[ComponentConfig]]] = {}
_DEFAULT_TYPES: dict[str, str] = {}


def register_config(
    section: str, config_cls: type[ComponentConfig], *, default: bool = False
) -> None:
    """Make `section.type: <name>` validate with `config_cls` (name = its `type` default)."""
    type_name = config_cls.model_fields["type"].default
    if not isinstance(type_name, str):
        raise TypeError(f"{config_cls.__name__}.type needs a string default naming the type")
    _CONFIG_TYPES.setdefault(section, {})[type_name] = config_cls
    if default or section not in _DEFAULT_TYPES:
        _DEFAULT_TYPES[section] = type_name


def known_types(section: str) -> list[str]:
    return sorted(_CONFIG_TYPES.get(section, {}))


def default_type(section: str) -> str | None:
    return _DEFAULT_TYPES.get(section)


def config_class(section: str, type_name: str) -> type[ComponentConfig] | None:
    return _CONFIG_TYPES.get(section, {}).get(type_name)


@dataclass(frozen=True)
class Section:
    """Marks a field as a component section; the loader uses it to suggest key names."""

    name: str


def _dispatch(section: str) -> Any:
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
    """The annotation of a component field: dispatches on `type` through the registry."""
    return Annotated[
        SerializeAsAny[ComponentConfig], BeforeValidator(_dispatch(section)), Section(section)
    ]


def _resolve_path(value: Any, info: ValidationInfo) -> Any:
    """Relative paths resolve against the config file's folder (passed as validation context)."""
    if not isinstance(value, str | os.PathLike):
        return value
    text = os.path.expanduser(os.fspath(value))
    base = (info.context or {}).get("base_dir")
    if base is not None and not os.path.isabs(text):
        text = os.path.join(os.fspath(base), text)
    return os.path.normpath(os.path.abspath(text)) if base is not None else text


# A path (or glob pattern) kept as a string so glob characters survive.
PathStr = Annotated[str, BeforeValidator(_resolve_path)]
