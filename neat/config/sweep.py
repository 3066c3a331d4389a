"""The search space of `neat sweep`: config keys and the values each may take.

    optimization.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
    optimization.warmup_steps: {type: int, low: 0, high: 200, step: 50}
    model.n_embd: {type: choice, values: [64, 128]}

Grid search needs finitely many values: `choice`, `int` (every `step`), or a float range with
`points` (evenly spaced, in log space for loguniform).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PositiveInt, TypeAdapter, ValidationError, model_validator

from neat.config.base import StrictModel
from neat.errors import ConfigError

__all__ = ["Choice", "FloatRange", "IntRange", "Parameter", "grid_values", "load_space"]

Scalar = float | int | str | bool


class FloatRange(StrictModel):
    type: Literal["uniform", "loguniform"]
    low: float
    high: float
    points: PositiveInt | None = Field(default=None, description="grid points (grid search)")

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        if not self.low < self.high:
            raise ValueError(f"empty range: low {self.low} must be below high {self.high}")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        return self


class IntRange(StrictModel):
    type: Literal["int"]
    low: int
    high: int
    step: PositiveInt = 1

    @model_validator(mode="after")
    def _check(self) -> IntRange:
        if not self.low <= self.high:
            raise ValueError(f"empty range: low {self.low} is above high {self.high}")
        return self


class Choice(StrictModel):
    type: Literal["choice"]
    values: list[Scalar] = Field(min_length=1)


Parameter = FloatRange | IntRange | Choice
_SPACE = TypeAdapter(dict[str, Parameter])


def grid_values(name: str, parameter: Parameter) -> list[Scalar]:
    """The values grid search tries for one parameter."""
    if isinstance(parameter, Choice):
        return list(parameter.values)
    if isinstance(parameter, IntRange):
        return list(range(parameter.low, parameter.high + 1, parameter.step))
    if parameter.points is None:
        raise ConfigError(
            f"space key {name}: grid search needs finitely many values; add points: N to its "
            f"{parameter.type} range"
        )
    if parameter.points == 1:
        return [parameter.low]
    low, high = parameter.low, parameter.high
    if parameter.type == "loguniform":
        low, high = math.log(low), math.log(high)
    points = [low + (high - low) * i / (parameter.points - 1) for i in range(parameter.points)]
    values: list[Scalar] = (
        [math.exp(v) for v in points] if parameter.type == "loguniform" else list(points)
    )
    return values


def load_space(path: Path, check_key: Any = None) -> dict[str, Parameter]:
    """The space in `path`; `check_key(key, value)` raises for a key the config lacks."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read the sweep space {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"the sweep space {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"the sweep space {path} must map config keys to ranges, e.g. "
            "optimization.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}"
        )
    try:
        space = _SPACE.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"the sweep space {path}: {where}: {first['msg']}") from None
    if check_key is not None:
        for key, parameter in space.items():
            check_key(
                key,
                grid_values(key, parameter)[0]
                if not isinstance(parameter, FloatRange)
                else parameter.low,
            )
    return space
