"""The dependency-injection container and the component registry."""

from neat.di.container import ServiceContainer, build_container
from neat.di.registry import BUILDERS, register_builder, register_component

__all__ = [
    "BUILDERS",
    "ServiceContainer",
    "build_container",
    "register_builder",
    "register_component",
]
