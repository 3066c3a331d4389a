"""Synthetic arithmetic problems with a controlled distribution shift (`type: synthetic_math`).

`spec` holds the config (levels, operations, formats, the test shift); `generate` draws the
problems and is the data source.
"""

from neat.data.synthetic_math.generate import (
    MathProblem,
    Problem,
    SyntheticMathSource,
    draw_problem,
    eval_problem,
    in_support,
    is_held_out,
    labelled_problems,
    problems,
    train_problem,
)
from neat.data.synthetic_math.spec import (
    FORMAT_NAMES,
    LEVEL_OPERATIONS,
    OPERAND_RANGES,
    OPERATIONS,
    MathSpec,
    SyntheticMathSourceConfig,
    SyntheticMathTestConfig,
)

__all__ = [
    "FORMAT_NAMES",
    "LEVEL_OPERATIONS",
    "OPERAND_RANGES",
    "OPERATIONS",
    "MathProblem",
    "MathSpec",
    "Problem",
    "SyntheticMathSource",
    "SyntheticMathSourceConfig",
    "SyntheticMathTestConfig",
    "draw_problem",
    "eval_problem",
    "in_support",
    "is_held_out",
    "labelled_problems",
    "problems",
    "train_problem",
]
