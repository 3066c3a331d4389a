"""Optimizer construction, LR schedules, gradient processing and mixed precision."""

from neat.optimization.adamw import AdamWFactory, param_groups
from neat.optimization.precision import autocast, grad_scaler, resolve_precision
from neat.optimization.schedules import lr_at

__all__ = ["AdamWFactory", "autocast", "grad_scaler", "lr_at", "param_groups", "resolve_precision"]
