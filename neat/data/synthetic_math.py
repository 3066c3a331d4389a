"""Synthetic arithmetic problems: the NEAT evaluation data.

Levels, operations, formats and the distribution shift are described in
`neat.config.synthetic`. Every problem is a pure function of (seed, stream, index), where the
stream is ``train``, ``test-id`` or ``test-ood``, so the source streams and any problem can be
regenerated alone. The three streams never share a question:

- ``train`` draws from the training distribution and skips held-out problems;
- ``test-id`` draws from the same distribution and keeps only held-out problems;
- ``test-ood`` draws from the test distribution and skips anything training can draw.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

from neat.config.synthetic import MathSpec, SyntheticMathSourceConfig
from neat.errors import DataError
from neat.interfaces import Document

__all__ = [
    "GENERATOR_VERSION",
    "MathProblem",
    "Problem",
    "SyntheticMathSource",
    "draw_problem",
    "eval_problem",
    "in_support",
    "is_held_out",
    "labelled_problems",
    "problems",
    "train_problem",
]

# Bump when the problems a config generates change: the token cache then misses.
GENERATOR_VERSION = "1"

# format -> operation -> question template; `{expr}` is a multi-step expression
TEMPLATES: dict[str, dict[str, str]] = {
    "symbolic": {
        "add": "{a}+{b}=",
        "sub": "{a}-{b}=",
        "mul": "{a}*{b}=",
        "multi": "{expr}=",
        "linear": "{a}x+{b}={c},x=",
    },
    "spaced": {
        "add": "{a} + {b} = ",
        "sub": "{a} - {b} = ",
        "mul": "{a} * {b} = ",
        "multi": "{expr} = ",
        "linear": "{a}x + {b} = {c}, x = ",
    },
    "words": {
        "add": "What is {a} plus {b}? ",
        "sub": "What is {a} minus {b}? ",
        "mul": "What is {a} times {b}? ",
        "multi": "What is {expr}? ",
        "linear": "If {a}x + {b} = {c}, what is x? ",
    },
}
# format -> how an operator of a multi-step expression is written
OPERATOR_TEXT: dict[str, dict[str, str]] = {
    "symbolic": {"+": "+", "-": "-", "*": "*"},
    "spaced": {"+": " + ", "-": " - ", "*": " * "},
    "words": {"+": " plus ", "-": " minus ", "*": " times "},
}
MUL_FACTOR = (2, 9)  # the one-digit factor of level-3 multiplication
LINEAR_COEFFICIENT = (2, 9)  # a in ax+b=c
LINEAR_OFFSET = (0, 50)  # b in ax+b=c

Split = Literal["train", "test", "test_id", "test_ood"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem before it is written out. `numbers` are the question's numbers in order
    (a, b[, c]), `operators` those of a multi-step expression."""

    level: int
    operation: str
    numbers: tuple[int, ...]
    operators: tuple[str, ...]
    controlled: tuple[int, ...]  # the operands `operand_range` restricts
    answer: int
    format: str

    @property
    def key(self) -> str:
        """The problem whatever its format: held-out decisions use it, so a held-out problem
        is absent from training in every format."""
        return f"{self.operation}:{self.numbers}:{self.operators}"

    @property
    def question(self) -> str:
        template = TEMPLATES[self.format][self.operation]
        if self.operation == "multi":
            text = OPERATOR_TEXT[self.format]
            a, b, c = self.numbers
            expr = f"{a}{text[self.operators[0]]}{b}{text[self.operators[1]]}{c}"
            return template.format(expr=expr)
        names = dict(zip("abc", self.numbers, strict=False))
        return template.format(**names)


class MathProblem(NamedTuple):
    """A written problem for evaluation: the answer is the text the model should produce."""

    question: str
    answer: str
    level: int
    in_distribution: bool


def _multi_value(a: int, ops: tuple[str, str], b: int, c: int) -> int:
    """a o1 b o2 c with * before + and -, left to right otherwise."""

    def apply(x: int, op: str, y: int) -> int:
        return x + y if op == "+" else x - y if op == "-" else x * y

    if ops[1] == "*" and ops[0] != "*":
        return apply(a, ops[0], b * c)
    return apply(apply(a, ops[0], b), ops[1], c)


def draw_problem(spec: MathSpec, level: int, rng: random.Random) -> Problem:
    """One problem of `level` from `spec` (operation and format uniformly at random)."""
    operation = rng.choice(spec.operations_at(level))
    fmt = rng.choice(spec.formats)
    bounds = spec.range_of(level, operation)
    if bounds is None:  # excluded by config validation
        raise DataError(f"level {level} {operation} has no operands in {spec.operand_range}")
    lo, hi = bounds
    numbers: tuple[int, ...]
    controlled: tuple[int, ...]
    operators: tuple[str, ...] = ()
    if operation in ("add", "sub"):
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if operation == "sub" and a < b:
            a, b = b, a
        numbers = controlled = (a, b)
        answer = a + b if operation == "add" else a - b
    elif operation == "mul":
        a, b = rng.randint(lo, hi), rng.randint(*MUL_FACTOR)
        numbers, controlled, answer = (a, b), (a,), a * b
    elif operation == "multi":
        a, b, c = rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi)
        pair = (rng.choice("+-*"), rng.choice("+-*"))
        numbers = controlled = (a, b, c)
        operators, answer = pair, _multi_value(a, pair, b, c)
    else:  # linear: ax + b = c, the answer is x
        coefficient, x = rng.randint(*LINEAR_COEFFICIENT), rng.randint(lo, hi)
        offset = rng.randint(*LINEAR_OFFSET)
        numbers = (coefficient, offset, coefficient * x + offset)
        controlled, answer = (x,), x
    return Problem(level, operation, numbers, operators, controlled, answer, fmt)


def in_support(spec: MathSpec, problem: Problem) -> bool:
    """Whether `spec` can draw `problem` (held-out decisions aside)."""
    if (
        problem.level not in spec.levels
        or problem.operation not in spec.operations_at(problem.level)
        or problem.format not in spec.formats
    ):
        return False
    bounds = spec.range_of(problem.level, problem.operation)
    return bounds is not None and all(bounds[0] <= v <= bounds[1] for v in problem.controlled)


def is_held_out(cfg: SyntheticMathSourceConfig, problem: Problem) -> bool:
    """A fixed hash of (seed, problem) decides; the same in every run and every format."""
    digest = hashlib.blake2b(f"{cfg.seed}/holdout/{problem.key}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64 < cfg.holdout_fraction


def _max_attempts(cfg: SyntheticMathSourceConfig) -> int:
    return max(1000, int(50 / min(cfg.holdout_fraction, 1 - cfg.holdout_fraction)))


def _rng(cfg: SyntheticMathSourceConfig, stream: str, index: int) -> random.Random:
    # A str seed goes through SHA-512: the same numbers on every platform and Python run.
    return random.Random(f"synthetic_math/{GENERATOR_VERSION}/{cfg.seed}/{stream}/{index}")


def train_problem(cfg: SyntheticMathSourceConfig, index: int) -> Problem:
    """Training problem `index`: not held out. Levels take turns (index mod #levels)."""
    spec = cfg.train_spec()
    level = spec.levels[index % len(spec.levels)]
    rng = _rng(cfg, "train", index)
    for _ in range(_max_attempts(cfg)):
        problem = draw_problem(spec, level, rng)
        if not is_held_out(cfg, problem):
            return problem
    raise DataError(
        f"synthetic_math: every level-{level} problem drawn was held out; "
        "lower holdout_fraction or widen the level's operations and operand_range"
    )


def eval_problem(cfg: SyntheticMathSourceConfig, index: int, in_distribution: bool) -> Problem:
    """Test problem `index`: a held-out one of the training distribution, or (OOD) one of the
    test distribution that training cannot draw."""
    train = cfg.train_spec()
    spec = train if in_distribution else cfg.test_spec()
    level = spec.levels[index % len(spec.levels)]
    stream = "test-id" if in_distribution else "test-ood"
    rng = _rng(cfg, stream, index)
    for _ in range(_max_attempts(cfg)):
        problem = draw_problem(spec, level, rng)
        if in_distribution and is_held_out(cfg, problem):
            return problem
        if not in_distribution and not in_support(train, problem):
            return problem
    what = "no held-out problem" if in_distribution else "no problem outside training"
    raise DataError(
        f"synthetic_math: {what} found at level {level} ({stream}); "
        + (
            "raise holdout_fraction or widen the level's operations and operand_range"
            if in_distribution
            else "make test.levels, test.operand_range or test.formats differ from training"
        )
    )


def _written(problem: Problem, in_distribution: bool) -> MathProblem:
    return MathProblem(problem.question, str(problem.answer), problem.level, in_distribution)


def labelled_problems(
    cfg: SyntheticMathSourceConfig, split: Split, n: int
) -> list[tuple[MathProblem, str]]:
    """`problems` with each problem's operation (add, sub, mul, multi, linear)."""
    drawn: list[tuple[Problem, bool]] = []
    if split == "train":
        drawn = [(train_problem(cfg, i), True) for i in range(n)]
    elif split in ("test", "test_id", "test_ood"):
        if split != "test_ood":
            drawn += [(eval_problem(cfg, i, True), True) for i in range(n)]
        if split != "test_id":
            drawn += [(eval_problem(cfg, i, False), False) for i in range(n)]
    else:
        raise ValueError(f"unknown split {split!r}; expected train, test, test_id or test_ood")
    return [(_written(problem, in_dist), problem.operation) for problem, in_dist in drawn]


def problems(cfg: SyntheticMathSourceConfig, split: Split, n: int) -> list[MathProblem]:
    """`n` problems of `split` as (question, answer, level, in_distribution).

    ``train``: the first `n` training documents' problems. ``test``: `n` in-distribution
    (held-out) problems followed by `n` out-of-distribution ones (``test_id`` / ``test_ood``:
    one part only).
    """
    return [problem for problem, _ in labelled_problems(cfg, split, n)]


class SyntheticMathSource:
    """Implements IDataSource: `num_train` problems, one document each.

    A document is ``question + answer + "\\n"``; `metadata["segments"]` marks the answer (and
    its newline) as the part to train on, as `JsonlSource` does for prompt/response data.
    `format` (`data.format`) tells the token cache whether to keep that mask.
    """

    kind = "synthetic_math"

    def __init__(self, cfg: SyntheticMathSourceConfig, format: str = "prompt_response") -> None:
        self.cfg = cfg
        self.format = format  # the data format the token cache prepares (masks or not)

    def documents(self) -> Iterator[Document]:
        for index in range(self.cfg.num_train):
            problem = train_problem(self.cfg, index)
            question, answer = problem.question, f"{problem.answer}\n"
            yield Document(
                text=question + answer,
                source=f"synthetic_math:train:{index}",
                metadata={
                    "segments": [(question, False), (answer, True)],
                    "level": problem.level,
                    "split": "train",
                },
            )

    def problems(self, split: Split, n: int) -> list[MathProblem]:
        return problems(self.cfg, split, n)

    def fingerprint(self) -> str:
        """Everything the training documents depend on (not `weight`, not `test`)."""
        spec = self.cfg.model_dump_json(exclude={"weight", "test"})
        text = f"{self.kind}:{GENERATOR_VERSION}:{self.format}:{spec}"
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> str:
        cfg, ood = self.cfg, self.cfg.test_spec()
        span = f", operands {list(cfg.operand_range)}" if cfg.operand_range else ""
        ood_span = f", operands {list(ood.operand_range)}" if ood.operand_range else ""
        return (
            f"synthetic math: {cfg.num_train:,} problems, levels {list(cfg.levels)}, "
            f"{'/'.join(cfg.operations)}, formats {'/'.join(cfg.formats)}{span}, seed {cfg.seed}, "
            f"{cfg.holdout_fraction:.0%} held out; test (OOD): levels {list(ood.levels)}, "
            f"{'/'.join(ood.operations)}, formats {'/'.join(ood.formats)}{ood_span}"
        )
