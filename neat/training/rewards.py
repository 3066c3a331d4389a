"""Reward functions of `rl.rewards`: each a `reward` component (its config class says what it
scores; its builder returns the function), so a user adds one with
`neat.register_component("reward", MyRewardConfig, build_my_reward)`.

A reward maps a problem and one sampled completion (text, up to and including its newline)
to a float; the objective sums them with their weights. Every built-in reward is in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field

from neat.config import register_component
from neat.config.rl import RewardConfig
from neat.data.rl_problems import RLProblem

__all__ = [
    "ControlCostRewardConfig",
    "ExactMatchRewardConfig",
    "FormatRewardConfig",
    "Reward",
    "RewardFn",
]

RewardFn = Callable[[RLProblem, str], float]


class Reward:
    """A built reward: its name in metrics, its weight and its function."""

    def __init__(self, name: str, weight: float, fn: RewardFn) -> None:
        self.name = name
        self.weight = weight
        self.fn = fn

    def __call__(self, problem: RLProblem, completion: str) -> float:
        return float(self.fn(problem, completion))


# -- exact match ---------------------------------------------------------------------------------


class ExactMatchRewardConfig(RewardConfig):
    """1 when the completion's first line is the reference answer's, else 0."""

    type: Literal["exact_match"] = "exact_match"


def exact_match(problem: RLProblem, completion: str) -> float:
    head, newline, _ = completion.partition("\n")
    return float(bool(newline) and head == problem.answer.partition("\n")[0])


def build_exact_match(cfg: ExactMatchRewardConfig, ctx: Any) -> Reward:
    return Reward("exact_match", cfg.weight, exact_match)


# -- the control task's answer format ------------------------------------------------------------


class FormatRewardConfig(RewardConfig):
    """The share of the five format checks the completion passes: reasoning tags, control
    tags, nothing but the two blocks, exactly `steps` controls, all within the bound."""

    tasks: ClassVar[tuple[str, ...]] = ("double_integrator",)
    type: Literal["format"] = "format"


def format_score(problem: RLProblem, completion: str) -> float:
    from neat.data.double_integrator.answer_format import check_format

    cfg = problem.source
    check = check_format(completion, steps=cfg.steps, bound=cfg.bound)  # type: ignore[attr-defined]
    passed = (
        check.reasoning_tags,
        check.control_tags,
        check.proper_format,
        check.exact_count,
        check.within_bounds,
    )
    return sum(passed) / len(passed)


def build_format(cfg: FormatRewardConfig, ctx: Any) -> Reward:
    return Reward("format", cfg.weight, format_score)


# -- the control task's cost ---------------------------------------------------------------------


class ControlCostRewardConfig(RewardConfig):
    """J* / max(J, J*): 1 for a control as cheap as the optimal one, towards 0 as the cost
    grows; 0 when no controls can be read. J = terminal_weight (p_T^2 + v_T^2) + sum u^2 dt,
    simulating x'' = u over the controls (cut or zero-padded to `steps`, clipped to the
    bound, as an actuator saturates)."""

    tasks: ClassVar[tuple[str, ...]] = ("double_integrator",)
    type: Literal["control_cost"] = "control_cost"
    terminal_weight: float = Field(
        default=10.0, gt=0.0, description="weight of the squared final distance to the origin"
    )


def build_control_cost(cfg: ControlCostRewardConfig, ctx: Any) -> Reward:
    from neat.data.double_integrator.answer_format import check_format
    from neat.data.double_integrator.dynamics import control_cost

    def score(problem: RLProblem, completion: str) -> float:
        source: Any = problem.source
        check = check_format(completion, steps=source.steps, bound=source.bound)
        if not check.controls:
            return 0.0
        task = problem.task
        kw = {"steps": source.steps, "horizon": source.horizon, "bound": source.bound}
        cost = control_cost(task.position, task.velocity, check.controls, **kw,
                            terminal_weight=cfg.terminal_weight)  # fmt: skip
        best = control_cost(
            task.position,
            task.velocity,
            _controls_of(problem.answer, source),
            **kw,
            terminal_weight=cfg.terminal_weight,
        )
        return best / max(cost, best) if cost > 0 else 1.0

    return Reward("control_cost", cfg.weight, score)


def _controls_of(answer: str, source: Any) -> list[float]:
    from neat.data.double_integrator.answer_format import check_format

    return check_format(answer, steps=source.steps, bound=source.bound).controls or []


register_component("reward", ExactMatchRewardConfig, build_exact_match)
register_component("reward", FormatRewardConfig, build_format)
register_component("reward", ControlCostRewardConfig, build_control_cost)
