"""The dependency-injection container: the wiring diagram of a run. Component types are
registered with `neat.register_component` (the registry lives in `neat.config.registry`)."""

from neat.config.registry import register_component
from neat.di.container import ServiceContainer, build_container

__all__ = ["ServiceContainer", "build_container", "register_component"]
