"""Models and their building blocks. The factory maps `model.type` to a builder."""

from neat.models.gpt import GPT, IGNORE_INDEX

__all__ = ["GPT", "IGNORE_INDEX"]
