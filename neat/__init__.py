"""neat: a dependency-injected, config-driven training pipeline for language models."""

from neat.config.registry import register_component

__version__ = "0.1.0"

__all__ = ["__version__", "register_component"]
