"""Config of the synthetic math source (`data.sources[].type: synthetic_math`); the
exact-match evaluator (`evaluation.type: exact_match`) scores models on the same problems.

Difficulty levels (what `levels` selects; `operations` filters the operations of each level):

=====  ==========  =========================================================  ==============
level  operation   problem                                                    e.g.
=====  ==========  =========================================================  ==============
1      add, sub    a, b in [0, 9] (single digit)                              ``3+4=7``
2      add, sub    a, b in [10, 99] (two digits)                              ``27-13=14``
3      add, sub    a, b in [100, 999] (three digits)                          ``512+389=901``
3      mul         a in [100, 999] times a one-digit b in [2, 9]              ``123*4=492``
4      multi       a o b o c, o in {+, -, *}, a, b, c in [1, 20]; usual       ``3+4*5=23``
                   precedence, the result may be negative (two steps)
5      linear      ``ax+b=c``, solve for x: a in [2, 9], x in [0, 20],        ``3x+5=20,x=5``
                   b in [0, 50]
=====  ==========  =========================================================  ==============

Subtraction never goes below zero (the larger operand comes first). `operand_range: [lo, hi]`
narrows the *controlled* operands, intersected with the level's own range: both operands of
add and sub, the multi-digit factor of mul, the three operands of multi, and the solution x of
linear (multipliers and coefficients keep their ranges).

`formats` names how a problem is written (the same problem in each):

- ``symbolic``: ``3+4=``, ``3x+5=20,x=``
- ``spaced``: ``3 + 4 = ``, ``3x + 5 = 20, x = ``
- ``words``: ``What is 3 plus 4? ``, ``If 3x + 5 = 20, what is x? ``

The distribution shift: training draws from (levels, operations, operand_range, formats); the
`test` section names what differs for the out-of-distribution problems (each key left out keeps
the training value). Three test splits:

- ``id``: fresh draws of what training sees (in a small space such as level 1, mostly problems
  the model has trained on; the usual in-distribution accuracy);
- ``heldout``: problems of the training distribution that never appear in training: a fixed
  `holdout_fraction` of all problems, chosen by a hash of the problem and the seed, in every
  format at once (generalisation inside the distribution);
- ``ood``: problems of the `test` distribution that training cannot draw.

With the char tokenizer, a test format that uses characters the training formats do not (e.g.
``words`` after ``symbolic``) cannot be encoded; those problems count as wrong and the
evaluator reports how many there were. Use `data.tokenizer.type: byte` for format shifts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from neat.config import SourceConfig, StrictModel

__all__ = [
    "CONTEXT_KEY",
    "FORMAT_NAMES",
    "LEVEL_OPERATIONS",
    "OPERAND_RANGES",
    "OPERATIONS",
    "MathSpec",
    "SyntheticMathSourceConfig",
    "SyntheticMathTestConfig",
]

Operation = Literal["add", "sub", "mul", "multi", "linear"]
FormatName = Literal["symbolic", "spaced", "words"]
Level = Annotated[int, Field(ge=1, le=5)]
OperandRange = tuple[int, int]

OPERATIONS: tuple[str, ...] = get_args(Operation)
FORMAT_NAMES: tuple[str, ...] = get_args(FormatName)

# The table of the module docstring. Keep them in step.
LEVEL_OPERATIONS: dict[int, tuple[str, ...]] = {
    1: ("add", "sub"),
    2: ("add", "sub"),
    3: ("add", "sub", "mul"),
    4: ("multi",),
    5: ("linear",),
}
# (level, operation) -> the range of its controlled operands (inclusive)
OPERAND_RANGES: dict[tuple[int, str], OperandRange] = {
    (1, "add"): (0, 9),
    (1, "sub"): (0, 9),
    (2, "add"): (10, 99),
    (2, "sub"): (10, 99),
    (3, "add"): (100, 999),
    (3, "sub"): (100, 999),
    (3, "mul"): (100, 999),
    (4, "multi"): (1, 20),
    (5, "linear"): (0, 20),
}

# Where the synthetic_math sources validated so far are noted in the validation context, so
# that `evaluation.type: exact_match` without a `source` reads the config's own source.
CONTEXT_KEY = "neat.synthetic_math.sources"


@dataclass(frozen=True)
class MathSpec:
    """One distribution of problems: which levels, operations, operand range and formats."""

    levels: tuple[int, ...]
    operations: tuple[str, ...]
    operand_range: OperandRange | None
    formats: tuple[str, ...]

    def operations_at(self, level: int) -> tuple[str, ...]:
        return tuple(op for op in LEVEL_OPERATIONS[level] if op in self.operations)

    def range_of(self, level: int, operation: str) -> OperandRange | None:
        """The controlled operands' range at (level, operation); None when it is empty."""
        lo, hi = OPERAND_RANGES[(level, operation)]
        if self.operand_range is not None:
            lo, hi = max(lo, self.operand_range[0]), min(hi, self.operand_range[1])
        return (lo, hi) if lo <= hi else None

    def check(self, where: str) -> None:
        """ValueError naming the first (level, operation) that has no problems."""
        for level in self.levels:
            ops = self.operations_at(level)
            if not ops:
                raise ValueError(
                    f"{where}level {level} has none of the operations {list(self.operations)} "
                    f"(level {level} offers {list(LEVEL_OPERATIONS[level])})"
                )
            for op in ops:
                if self.range_of(level, op) is None:
                    natural = OPERAND_RANGES[(level, op)]
                    raise ValueError(
                        f"{where}operand_range {list(self.operand_range or ())} does not meet "
                        f"level {level} {op}'s operands {list(natural)}"
                    )

    def contains(self, other: MathSpec) -> bool:
        """Whether every problem `other` can draw is one this spec can draw."""
        if not set(other.formats) <= set(self.formats):
            return False
        for level in other.levels:
            for op in other.operations_at(level):
                if level not in self.levels or op not in self.operations:
                    return False
                mine, theirs = self.range_of(level, op), other.range_of(level, op)
                if mine is None or theirs is None:
                    return False
                if not (mine[0] <= theirs[0] and theirs[1] <= mine[1]):
                    return False
        return True


def _all_operations() -> list[Operation]:
    return ["add", "sub", "mul", "multi", "linear"]


def _symbolic() -> list[FormatName]:
    return ["symbolic"]


def _distinct(value: list[Any] | None, name: str) -> list[Any] | None:
    if value is None:
        return None
    if not value:
        raise ValueError(f"{name} must not be empty")
    duplicates = sorted({v for v in value if value.count(v) > 1})
    if duplicates:
        raise ValueError(f"{name} lists {duplicates} more than once")
    return value


def _ordered(value: OperandRange | None) -> OperandRange | None:
    if value is not None and value[0] > value[1]:
        raise ValueError(f"operand_range must be [low, high] with low <= high, got {list(value)}")
    return value


class SyntheticMathTestConfig(StrictModel):
    """The out-of-distribution problems: each key set here replaces the training value."""

    levels: list[Level] | None = Field(default=None, description="default: the training levels")
    operations: list[Operation] | None = Field(
        default=None, description="default: the training operations"
    )
    operand_range: OperandRange | None = Field(
        default=None, description="default: the training operand_range"
    )
    formats: list[FormatName] | None = Field(
        default=None, description="default: the training formats"
    )

    @field_validator("levels", "operations", "formats")
    @classmethod
    def _check_lists(cls, value: list[Any] | None, info: ValidationInfo) -> list[Any] | None:
        return _distinct(value, f"test.{info.field_name}")

    @field_validator("operand_range")
    @classmethod
    def _check_range(cls, value: OperandRange | None) -> OperandRange | None:
        return _ordered(value)


class SyntheticMathSourceConfig(SourceConfig):
    """Arithmetic problems generated from a seed (levels 1..5: see `neat.config.synthetic`).

    Problem i of each stream is a pure function of (seed, i): the source streams, and every
    run with the same config sees the same documents.
    """

    type: Literal["synthetic_math"] = "synthetic_math"
    seed: int = 0
    num_train: PositiveInt = Field(default=20_000, description="training problems (documents)")
    levels: list[Level] = Field(default_factory=lambda: [1, 2], description="training levels")
    operations: list[Operation] = Field(
        default_factory=_all_operations, description="operations to draw (per level)"
    )
    operand_range: OperandRange | None = Field(
        default=None, description="[low, high] narrowing the levels' operand ranges"
    )
    formats: list[FormatName] = Field(
        default_factory=_symbolic, description="symbolic | spaced | words"
    )
    holdout_fraction: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="share of problems kept out of training for the heldout test split",
    )
    test: SyntheticMathTestConfig = Field(
        default_factory=lambda: SyntheticMathTestConfig(levels=[3]),
        description="what the out-of-distribution problems change",
    )

    @field_validator("levels", "operations", "formats")
    @classmethod
    def _check_lists(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        return _distinct(value, str(info.field_name)) or value

    @field_validator("operand_range")
    @classmethod
    def _check_range(cls, value: OperandRange | None) -> OperandRange | None:
        return _ordered(value)

    def train_spec(self) -> MathSpec:
        return MathSpec(
            levels=tuple(self.levels),
            operations=tuple(self.operations),
            operand_range=self.operand_range,
            formats=tuple(self.formats),
        )

    def test_spec(self) -> MathSpec:
        """The out-of-distribution spec: the training one with `test`'s keys replaced."""
        test = self.test
        return MathSpec(
            levels=tuple(test.levels if test.levels is not None else self.levels),
            operations=tuple(test.operations if test.operations is not None else self.operations),
            operand_range=(
                test.operand_range if test.operand_range is not None else self.operand_range
            ),
            formats=tuple(test.formats if test.formats is not None else self.formats),
        )

    @model_validator(mode="after")
    def _check_specs(self, info: ValidationInfo) -> SyntheticMathSourceConfig:
        self.train_spec().check("")
        ood = self.test_spec()
        ood.check("test: ")
        if self.train_spec().contains(ood):
            raise ValueError(
                "test describes no problem outside the training distribution; set test.levels, "
                "test.operations, test.operand_range or test.formats to something training "
                "does not cover"
            )
        if isinstance(info.context, dict):  # see ExactMatchEvaluatorConfig.source
            info.context.setdefault(CONTEXT_KEY, []).append(self)
        return self
