"""The built-in rewards on crafted completions of a real double-integrator problem: the
reference answer scores 1, and each way to get the format or the control wrong costs what
it should."""

from __future__ import annotations

import pytest

from neat.config import build, load_config
from neat.data.double_integrator import DoubleIntegratorSourceConfig, train_problem
from neat.data.rl_problems import RLProblem, rl_problem
from neat.data.synthetic_math import SyntheticMathSourceConfig
from neat.training.rewards import Reward

SOURCE = DoubleIntegratorSourceConfig(type="double_integrator", num_train=10)


def reward(kind: str, **options: object) -> Reward:
    rl = {"reference": "none", "kl_coef": 0, "rewards": [{"type": kind, **options}]}
    raw = {"data": {"type": "double_integrator"}, "training": {"objective": "grpo"}, "rl": rl}
    section = load_config(raw=raw).rl.rewards[0]
    built: Reward = build("reward", section, None)
    return built


@pytest.fixture
def problem() -> RLProblem:
    return rl_problem(SOURCE, 3)


def _controls(problem: RLProblem) -> list[str]:
    block = problem.answer.split("<CONTROLS>")[1].split("</CONTROLS>")[0]
    return block.split(",")


def _with_controls(problem: RLProblem, controls: list[str]) -> str:
    head = problem.answer.split("<CONTROLS>")[0]
    return f"{head}<CONTROLS>{','.join(controls)}</CONTROLS>\n"


def test_the_reference_answer_is_perfect(problem: RLProblem) -> None:
    assert problem.task == train_problem(SOURCE, 3)
    assert reward("format")(problem, problem.answer) == 1.0
    assert reward("control_cost")(problem, problem.answer) == pytest.approx(1.0)
    assert reward("exact_match")(problem, problem.answer) == 1.0


def test_format_gives_a_share_per_check(problem: RLProblem) -> None:
    fmt = reward("format")
    controls = _controls(problem)
    assert fmt(problem, _with_controls(problem, controls[:49])) == pytest.approx(4 / 5)
    out_of_bounds = ["3.50", *controls[1:]]
    assert fmt(problem, _with_controls(problem, out_of_bounds)) == pytest.approx(4 / 5)
    not_numbers = ["abc", *controls[1:]]  # nothing parses: neither count nor bounds hold
    assert fmt(problem, _with_controls(problem, not_numbers)) == pytest.approx(3 / 5)
    no_reasoning = problem.answer.replace("</REASONING>", "")
    assert fmt(problem, no_reasoning) < 1.0
    assert fmt(problem, "the controls are zero\n") == 0.0


def test_control_cost_falls_with_a_worse_control(problem: RLProblem) -> None:
    cost = reward("control_cost")
    controls = _controls(problem)
    zeros = _with_controls(problem, ["0.00"] * 50)
    assert 0.0 < cost(problem, zeros) < 0.5  # doing nothing leaves the state where it was
    assert cost(problem, _with_controls(problem, controls[:40])) < 0.9  # ten steps short
    assert cost(problem, "no answer\n") == 0.0
    saturated = _with_controls(problem, ["9.00", *controls[1:]])  # clipped to the bound
    assert cost(problem, saturated) < 1.0


def test_exact_match_on_synthetic_math() -> None:
    math = rl_problem(SyntheticMathSourceConfig(type="synthetic_math", num_train=5), 0)
    exact = Reward("exact_match", 1.0, reward("exact_match").fn)
    assert exact(math, math.answer) == 1.0
    assert exact(math, math.answer.strip() + "0\n") == 0.0
    assert exact(math, math.answer.strip()) == 0.0  # no newline: the answer never ended
