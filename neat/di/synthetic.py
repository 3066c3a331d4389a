"""Builders of the synthetic math source and the exact-match evaluator.

Importing this module registers them (`neat.di.builders` imports it); their config classes
live in `neat.config.synthetic`.
"""

from __future__ import annotations

import torch

from neat.config.schema import ExperimentConfig
from neat.config.synthetic import ExactMatchEvaluatorConfig, SyntheticMathSourceConfig
from neat.data.pipeline import TokenData
from neat.data.synthetic_math import SyntheticMathSource, labelled_problems
from neat.di.registry import register_builder
from neat.errors import ConfigError
from neat.evaluation.exact_match import ExactMatchEvaluator
from neat.interfaces import IDataSource, IEvaluator

__all__ = ["build_exact_match_evaluator", "build_synthetic_math_source"]


def build_synthetic_math_source(
    cfg: SyntheticMathSourceConfig, config: ExperimentConfig
) -> IDataSource:
    return SyntheticMathSource(cfg, format=config.data.format)


def build_exact_match_evaluator(
    cfg: ExactMatchEvaluatorConfig,
    *,
    token_data: TokenData,
    block_size: int,
    batch_size: int,
    device: torch.device,
    precision: str,
) -> IEvaluator:
    """`batch_size` (the training one) is unused: generation batches are `cfg.batch_size`."""
    if cfg.source is None:
        raise ConfigError(
            "evaluation.type exact_match needs synthetic math problems: add a source of type "
            "synthetic_math to data.sources, or set evaluation.source"
        )
    labelled = labelled_problems(cfg.source, "test", cfg.num_problems)
    return ExactMatchEvaluator(
        [problem for problem, _ in labelled],
        token_data.tokenizer,
        device,
        block_size=block_size,
        precision=precision,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        operations=[operation for _, operation in labelled],
    )


register_builder("source", "synthetic_math", build_synthetic_math_source)
register_builder("evaluation", "exact_match", build_exact_match_evaluator)
