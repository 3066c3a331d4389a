"""Config of the double-integrator source (`data.sources[].type: double_integrator`); the
control-format evaluator (`evaluation.type: control_format`) scores models on its problems.

A problem is an initial state (position, velocity) drawn uniformly from the ranges below and
rounded to `decimals`; the answer is `steps` controls in [-bound, bound] that bring x'' = u to
rest at the origin after `horizon` seconds. `test` names the distribution shift of the
``test_ood`` split (e.g. larger initial states); a range it leaves out keeps the training one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from neat.config import SourceConfig, StrictModel
from neat.errors import ConfigError

__all__ = ["CONTEXT_KEY", "DoubleIntegratorSourceConfig", "DoubleIntegratorTestConfig", "Range"]

Range = tuple[float, float]

# Where the double_integrator sources validated so far are noted in the validation context, so
# that `evaluation.type: control_format` without a `source` reads the config's own source.
CONTEXT_KEY = "neat.double_integrator.sources"


def _ordered(value: Range | None, name: str) -> Range | None:
    if value is not None and value[0] > value[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(value)}")
    return value


class DoubleIntegratorTestConfig(StrictModel):
    """The out-of-distribution initial states: each range set here replaces the training one."""

    position: Range | None = Field(default=None, description="default: the training position")
    velocity: Range | None = Field(default=None, description="default: the training velocity")

    @field_validator("position", "velocity")
    @classmethod
    def _check_range(cls, value: Range | None, info: ValidationInfo) -> Range | None:
        return _ordered(value, f"test.{info.field_name}")


class DoubleIntegratorSourceConfig(SourceConfig):
    """Steer x'' = u to the origin: problems generated from a seed, answered in the fixed
    ``<REASONING>...</REASONING><CONTROLS>...</CONTROLS>`` format.

    Problem i of each split is a pure function of (seed, split, i): the source streams, and
    every run with the same config sees the same documents.
    """

    type: Literal["double_integrator"] = "double_integrator"
    seed: int = 0
    num_train: PositiveInt = Field(default=10_000, description="training problems (documents)")
    num_test: PositiveInt = Field(default=200, description="problems per test split")
    position: Range = Field(default=(-1.0, 1.0), description="[low, high] of the initial x")
    velocity: Range = Field(default=(-1.0, 1.0), description="[low, high] of the initial v")
    steps: PositiveInt = Field(default=50, description="controls per answer")
    horizon: float = Field(default=5.0, gt=0.0, description="seconds to reach the origin")
    bound: float = Field(default=3.0, gt=0.0, description="controls must lie in [-bound, bound]")
    decimals: int = Field(
        default=2, ge=0, le=4, description="decimals of the states and controls as written"
    )
    test: DoubleIntegratorTestConfig | None = Field(
        default=None, description="the test_ood split's initial states (default: no such split)"
    )

    @field_validator("position", "velocity")
    @classmethod
    def _check_range(cls, value: Range, info: ValidationInfo) -> Range:
        return _ordered(value, str(info.field_name)) or value

    @model_validator(mode="after")
    def _note(self, info: ValidationInfo) -> DoubleIntegratorSourceConfig:
        if isinstance(info.context, dict):  # see ControlFormatEvaluatorConfig.source
            info.context.setdefault(CONTEXT_KEY, []).append(self)
        return self

    def test_ranges(self) -> tuple[Range, Range]:
        """The (position, velocity) ranges of the test_ood split; ConfigError without `test`."""
        if self.test is None:
            raise ConfigError(
                "the double_integrator source has no test_ood split: set data.sources[].test "
                "(e.g. test: {position: [-2, 2], velocity: [-2, 2]})"
            )
        return (self.test.position or self.position, self.test.velocity or self.velocity)
