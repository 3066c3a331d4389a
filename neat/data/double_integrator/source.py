"""Double-integrator problems and their reference answers: the source of the SFT documents,
and the problems RL prompts and the evaluator draw.

Every problem is a pure function of (seed, split, index), so the source streams and any
problem can be regenerated alone. The splits: ``train`` (the documents), ``test`` (another
stream of the training ranges) and ``test_ood`` (the `test` ranges: the distribution shift).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from neat.config import register_component
from neat.data.double_integrator.answer_format import completion_text, prompt_text
from neat.data.double_integrator.dynamics import control_cost, optimal_controls
from neat.data.double_integrator.spec import DoubleIntegratorSourceConfig, Range
from neat.interfaces import Document
from neat.interfaces.contexts import SourceContext

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "ControlProblem",
    "DoubleIntegratorSource",
    "Split",
    "make_problem",
    "problems",
    "train_problem",
]

# Bump when the documents a config generates change: the token cache then misses.
GENERATOR_VERSION = "2"  # 2: the reasoning names the last control

Split = Literal["train", "test", "test_ood"]
SPLITS: tuple[str, ...] = get_args(Split)


@dataclass(frozen=True)
class ControlProblem:
    """One problem: the prompt and reference answer as written, the initial state they show,
    and the cost of that answer's (rounded) controls, which cost ratios divide by."""

    prompt: str
    answer: str
    position: float
    velocity: float
    optimal_cost: float
    split: str


def make_problem(
    cfg: DoubleIntegratorSourceConfig, position: float, velocity: float, split: str
) -> ControlProblem:
    """The problem of one initial state: the minimum-energy controls rounded as written, so
    the reference answer itself has cost ratio 1."""
    exact = optimal_controls(position, velocity, cfg.steps, cfg.horizon, cfg.bound)
    rounded = [round(u, cfg.decimals) for u in exact]
    cost = control_cost(
        position, velocity, rounded, steps=cfg.steps, horizon=cfg.horizon, bound=cfg.bound
    )
    return ControlProblem(
        prompt=prompt_text(position, velocity, cfg),
        answer=completion_text(position, velocity, rounded, cfg),
        position=position,
        velocity=velocity,
        optimal_cost=cost,
        split=split,
    )


def _draw(rng: random.Random, bounds: Range, decimals: int) -> float:
    # + 0.0 turns -0.0 into 0.0: the state is what the prompt shows
    return round(rng.uniform(*bounds), decimals) + 0.0


def _problem(cfg: DoubleIntegratorSourceConfig, split: Split, index: int) -> ControlProblem:
    if split == "test_ood":
        position_range, velocity_range = cfg.test_ranges()
    elif split in ("train", "test"):
        position_range, velocity_range = cfg.position, cfg.velocity
    else:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    # A str seed goes through SHA-512: the same numbers on every platform and Python run.
    rng = random.Random(f"double_integrator/{cfg.seed}/{split}/{index}")
    position = _draw(rng, position_range, cfg.decimals)
    velocity = _draw(rng, velocity_range, cfg.decimals)
    return make_problem(cfg, position, velocity, split)


def train_problem(cfg: DoubleIntegratorSourceConfig, index: int) -> ControlProblem:
    """Training problem `index` (document `index`), a function of (seed, index) only."""
    return _problem(cfg, "train", index)


def problems(cfg: DoubleIntegratorSourceConfig, split: Split, n: int) -> list[ControlProblem]:
    """The first `n` problems of `split`; ``test_ood`` needs `cfg.test` (ConfigError)."""
    return [_problem(cfg, split, i) for i in range(n)]


class DoubleIntegratorSource:
    """Implements IDataSource: `num_train` problems, one document each.

    A document is ``prompt + answer``; `metadata["segments"]` marks the answer (and its
    newline) as the part to train on, as `JsonlSource` does for prompt/response data.
    `format` (`data.format`) tells the token cache whether to keep that mask.
    """

    kind = "double_integrator"

    def __init__(self, cfg: DoubleIntegratorSourceConfig, format: str = "prompt_response") -> None:
        self.cfg = cfg
        self.format = format  # the data format the token cache prepares (masks or not)

    def documents(self) -> Iterator[Document]:
        for index in range(self.cfg.num_train):
            problem = train_problem(self.cfg, index)
            yield Document(
                text=problem.prompt + problem.answer,
                source=f"double_integrator:train:{index}",
                metadata={
                    "segments": [(problem.prompt, False), (problem.answer, True)],
                    "split": "train",
                },
            )

    def problems(self, split: Split, n: int) -> list[ControlProblem]:
        return problems(self.cfg, split, n)

    def fingerprint(self) -> str:
        """Everything the training documents depend on (not `weight`, not `test`)."""
        spec = self.cfg.model_dump_json(exclude={"weight", "test"})
        text = f"{self.kind}:{GENERATOR_VERSION}:{self.format}:{spec}"
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> str:
        cfg = self.cfg
        ood = ""
        if cfg.test is not None:
            position, velocity = cfg.test_ranges()
            ood = f"; test_ood: x in {list(position)}, v in {list(velocity)}"
        return (
            f"double integrator: {cfg.num_train:,} problems, x in {list(cfg.position)}, "
            f"v in {list(cfg.velocity)}, {cfg.steps} controls in [-{cfg.bound:g}, "
            f"{cfg.bound:g}] over {cfg.horizon:g} s, {cfg.decimals} decimals, seed {cfg.seed}"
            f"{ood}"
        )


def build_double_integrator_source(
    cfg: DoubleIntegratorSourceConfig, ctx: SourceContext
) -> DoubleIntegratorSource:
    return DoubleIntegratorSource(cfg, format=ctx.format)


register_component("source", DoubleIntegratorSourceConfig, build_double_integrator_source)
