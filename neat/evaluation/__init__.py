"""Metrics (loss, perplexity, bits per byte) and generation."""

from neat.evaluation.evaluator import LossEvaluator, bits_per_byte
from neat.evaluation.generation import filter_logits, generate

__all__ = ["LossEvaluator", "bits_per_byte", "filter_logits", "generate"]
