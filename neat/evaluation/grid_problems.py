"""The settings every evaluator of held-out grid-world problems shares."""

from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt, ValidationInfo, model_validator

from neat.config import EvaluatorConfig
from neat.config.base import source_from_context
from neat.data.grid_world.spec import CONTEXT_KEY, GridWorldSourceConfig

__all__ = ["GridProblemsConfig"]


class GridProblemsConfig(EvaluatorConfig):
    """`num_problems` of each test split (id, heldout, ood) drawn from `source`."""

    num_problems: PositiveInt = Field(default=50, description="problems per test split")
    source: GridWorldSourceConfig | None = Field(
        default=None, description="default: the first grid_world source in data.sources"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_source(cls, raw: Any, info: ValidationInfo) -> Any:
        return source_from_context(raw, info, CONTEXT_KEY)
