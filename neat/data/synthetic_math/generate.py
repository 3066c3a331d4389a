"""Synthetic arithmetic problems: the NEAT evaluation data.

Levels, operations, formats and the distribution shift are described in
`neat.data.synthetic_math.spec`. Every problem is a pure function of (seed, stream, index), so the
source streams and any problem can be regenerated alone. The streams:

- ``train`` draws from the training distribution and skips held-out problems;
- ``test-id`` draws the same way (independent samples of what training sees, so in a small
  problem space most of them are training problems: the usual in-distribution accuracy);
- ``test-heldout`` draws from the same distribution and keeps only held-out problems, which
  no training document asks (generalisation inside the distribution);
- ``test-ood`` draws from the test distribution and skips anything training can draw.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

from neat.config import register_component
from neat.data.synthetic_math.spec import MathSpec, SyntheticMathSourceConfig
from neat.errors import DataError
from neat.interfaces import Document
from neat.interfaces.contexts import SourceContext

__all__ = [
    "GENERATOR_VERSION",
    "TEST_SPLITS",
    "MathProblem",
    "Problem",
    "SyntheticMathSource",
    "TestSplit",
    "draw_problem",
    "eval_problem",
    "in_support",
    "is_held_out",
    "labelled_problems",
    "problems",
    "train_problem",
]

# Bump when the problems a config generates change: the token cache then misses.
GENERATOR_VERSION = "1"  # train documents only: test splits do not enter the cache

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

Split = Literal["train", "test", "test_id", "test_heldout", "test_ood"]
TestSplit = Literal["id", "heldout", "ood"]
TEST_SPLITS: tuple[TestSplit, ...] = ("id", "heldout", "ood")


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
    """A written problem for evaluation: the answer is the text the model should produce.
    `split` is ``id``, ``heldout`` or ``ood`` (see the module docstring)."""

    question: str
    answer: str
    level: int
    split: TestSplit

    @property
    def in_distribution(self) -> bool:
        """Drawn from the training distribution (``id`` or ``heldout``)."""
        return self.split != "ood"


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


def _draw_until(
    cfg: SyntheticMathSourceConfig,
    spec: MathSpec,
    stream: str,
    index: int,
    accept: Callable[[Problem], bool],
) -> Problem | None:
    """Problem `index` of `stream`: the first draw `accept` takes. Levels take turns."""
    level = spec.levels[index % len(spec.levels)]
    rng = _rng(cfg, stream, index)
    for _ in range(_max_attempts(cfg)):
        problem = draw_problem(spec, level, rng)
        if accept(problem):
            return problem
    return None


def train_problem(cfg: SyntheticMathSourceConfig, index: int, stream: str = "train") -> Problem:
    """Training problem `index`: not held out. Levels take turns (index mod #levels)."""
    spec = cfg.train_spec()
    problem = _draw_until(cfg, spec, stream, index, lambda p: not is_held_out(cfg, p))
    if problem is None:
        level = spec.levels[index % len(spec.levels)]
        raise DataError(
            f"synthetic_math: every level-{level} problem drawn was held out; "
            "lower holdout_fraction or widen the level's operations and operand_range"
        )
    return problem


def eval_problem(cfg: SyntheticMathSourceConfig, index: int, split: TestSplit) -> Problem:
    """Test problem `index` of `split`: ``id``, a fresh draw of what training sees;
    ``heldout``, a held-out problem of the training distribution; ``ood``, a problem of the
    test distribution that training cannot draw."""
    if split == "id":
        return train_problem(cfg, index, stream="test-id")
    train = cfg.train_spec()
    if split == "heldout":
        spec, accept = train, (lambda p: is_held_out(cfg, p))
        hint = "raise holdout_fraction or widen the level's operations and operand_range"
    elif split == "ood":
        spec, accept = cfg.test_spec(), (lambda p: not in_support(train, p))
        hint = "make test.levels, test.operand_range or test.formats differ from training"
    else:
        raise ValueError(f"unknown test split {split!r}; expected one of {TEST_SPLITS}")
    problem = _draw_until(cfg, spec, f"test-{split}", index, accept)
    if problem is None:
        level = spec.levels[index % len(spec.levels)]
        what = "no held-out problem" if split == "heldout" else "no problem outside training"
        raise DataError(f"synthetic_math: {what} found at level {level} (test-{split}); {hint}")
    return problem


def _written(problem: Problem, split: TestSplit) -> MathProblem:
    return MathProblem(problem.question, str(problem.answer), problem.level, split)


def labelled_problems(
    cfg: SyntheticMathSourceConfig, split: Split, n: int
) -> list[tuple[MathProblem, str]]:
    """`problems` with each problem's operation (add, sub, mul, multi, linear)."""
    drawn: list[tuple[Problem, TestSplit]]
    if split == "train":
        drawn = [(train_problem(cfg, i), "id") for i in range(n)]
    elif split == "test":
        drawn = [(eval_problem(cfg, i, part), part) for part in TEST_SPLITS for i in range(n)]
    elif split in ("test_id", "test_heldout", "test_ood"):
        part: TestSplit = split.removeprefix("test_")  # type: ignore[assignment]
        drawn = [(eval_problem(cfg, i, part), part) for i in range(n)]
    else:
        raise ValueError(
            f"unknown split {split!r}; expected train, test, test_id, test_heldout or test_ood"
        )
    return [(_written(problem, part), problem.operation) for problem, part in drawn]


def problems(cfg: SyntheticMathSourceConfig, split: Split, n: int) -> list[MathProblem]:
    """`n` problems of `split` as (question, answer, level, split).

    ``train``: the first `n` training documents' problems. ``test``: `n` problems of each
    test split in turn (``id``, ``heldout``, ``ood``); ``test_id``, ``test_heldout`` and
    ``test_ood`` give one split only.
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


def build_synthetic_math_source(
    cfg: SyntheticMathSourceConfig, ctx: SourceContext
) -> SyntheticMathSource:
    return SyntheticMathSource(cfg, format=ctx.format)


register_component("source", SyntheticMathSourceConfig, build_synthetic_math_source)
