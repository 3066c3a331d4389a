"""neat: a dependency-injected, config-driven training pipeline for language models."""

__version__ = "0.1.0"
