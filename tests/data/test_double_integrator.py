"""The double-integrator source: dynamics, the optimal control, the answer format and its
checks, the problem streams and the config's validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neat.config import build, load_config
from neat.data.double_integrator import (
    ControlProblem,
    DoubleIntegratorSource,
    DoubleIntegratorSourceConfig,
    check_format,
    completion_text,
    control_cost,
    optimal_controls,
    problems,
    prompt_text,
    simulate,
    step_dt,
    train_problem,
)
from neat.errors import ConfigError
from neat.interfaces.contexts import SourceContext

CFG = DoubleIntegratorSourceConfig(num_train=20, test={"position": (1.0, 2.0)})
STEPS, BOUND = CFG.steps, CFG.bound


# -- dynamics ------------------------------------------------------------------------------------


def test_simulate_matches_the_closed_forms() -> None:
    dt = step_dt(50, 5.0)
    assert dt == pytest.approx(0.1)
    # constant u: the continuous solution, exactly (zero-order hold is exact for it)
    p, v = simulate(0.3, -0.2, [0.7] * 50, dt)
    assert p == pytest.approx(0.3 - 0.2 * 5 + 0.7 * 25 / 2, abs=1e-12)
    assert v == pytest.approx(-0.2 + 0.7 * 5, abs=1e-12)
    # any u: p_T = p0 + v0 T + sum_k u_k dt ((N-1-k) dt + dt/2)
    u = np.random.default_rng(0).uniform(-3, 3, 50)
    p, v = simulate(0.3, -0.2, list(u), dt)
    weights = dt * ((49 - np.arange(50)) * dt + dt / 2)
    assert p == pytest.approx(0.3 - 0.2 * 5 + float(weights @ u), abs=1e-12)
    assert v == pytest.approx(-0.2 + float(u.sum()) * dt, abs=1e-12)


@pytest.mark.parametrize(("p0", "v0"), [(0.52, -0.31), (-1.0, 1.0), (0.0, 0.0), (1.0, 1.0)])
def test_optimal_controls_reach_the_origin_as_a_ramp(p0: float, v0: float) -> None:
    u = optimal_controls(p0, v0, STEPS, 5.0, BOUND)
    assert len(u) == STEPS
    p, v = simulate(p0, v0, u, step_dt(STEPS, 5.0))
    assert abs(p) < 1e-9 and abs(v) < 1e-9
    assert np.allclose(np.diff(u, 2), 0.0, atol=1e-12)  # affine in k


def test_optimal_controls_use_the_least_energy() -> None:
    dt = step_dt(STEPS, 5.0)
    u = np.array(optimal_controls(0.8, -0.4, STEPS, 5.0, BOUND))
    # a direction that leaves the final state alone: orthogonal to both rows of G
    k = np.arange(STEPS - 1, -1, -1)
    g = np.stack([dt * dt * (k + 0.5), np.full(STEPS, dt)])
    d = np.random.default_rng(1).normal(size=STEPS)
    d -= g.T @ np.linalg.solve(g @ g.T, g @ d)
    other = u + 0.05 * d
    p, v = simulate(0.8, -0.4, list(other), dt)
    assert abs(p) < 1e-9 and abs(v) < 1e-9  # it reaches the origin too
    assert float(u @ u) < float(other @ other)


def test_optimal_controls_saturate_at_the_bound() -> None:
    u = optimal_controls(40.0, 0.0, STEPS, 5.0, BOUND)
    assert max(map(abs, u)) == BOUND


def test_control_cost_pads_truncates_and_saturates() -> None:
    kw = {"steps": STEPS, "horizon": 5.0, "bound": BOUND}
    u = optimal_controls(0.5, 0.2, STEPS, 5.0, BOUND)
    energy = sum(x * x for x in u) * 0.1
    assert control_cost(0.5, 0.2, u, **kw) == pytest.approx(energy, abs=1e-12)
    assert control_cost(0.5, 0.2, [*u, 9.0, 9.0], **kw) == control_cost(0.5, 0.2, u, **kw)
    assert control_cost(0.5, 0.2, u[:10], **kw) == control_cost(0.5, 0.2, u[:10] + [0.0] * 40, **kw)
    assert control_cost(0.0, 0.0, [100.0] * 50, **kw) == control_cost(0.0, 0.0, [3.0] * 50, **kw)
    # nothing applied: only the terminal error counts
    assert control_cost(0.5, 0.2, [], **kw) == pytest.approx(10 * ((0.5 + 0.2 * 5) ** 2 + 0.04))


# -- answer format -------------------------------------------------------------------------------

GOOD = train_problem(CFG, 0).answer


def test_prompt_and_completion_read_as_documented() -> None:
    assert prompt_text(0.52, -0.31, CFG) == (
        "Steer x''=u from x=0.52, v=-0.31 to 0 in 5 s; 50 controls in [-3, 3].\n"
    )
    text = completion_text(0.0, 0.0, [-0.004, 0.5, 1.0], CFG)
    assert text == (
        "<REASONING>min energy: u starts at -0.004, changes by 0.502 per step and ends at "
        "1.00</REASONING>"
        "<CONTROLS>0.00,0.50,1.00</CONTROLS>\n"
    )
    assert GOOD.endswith("</CONTROLS>\n") and GOOD.split("<CONTROLS>")[1].count(",") == STEPS - 1


def _replace_controls(numbers: list[str]) -> str:
    head = GOOD.split("<CONTROLS>")[0]
    return f"{head}<CONTROLS>{','.join(numbers)}</CONTROLS>\n"


FIFTY = ["0.10"] * 50
CASES: dict[str, tuple[str, tuple[bool, bool, bool, bool, bool]]] = {
    "correct": (GOOD, (True, True, True, True, True)),
    "spaces between blocks": (GOOD.replace("</REASONING>", "</REASONING>\n "), (True,) * 5),
    "no reasoning": (GOOD.split("</REASONING>")[1], (False, True, False, True, True)),
    "reasoning unclosed": (
        GOOD.replace("</REASONING>", ""),
        (False, True, False, True, True),
    ),
    "controls unclosed": (GOOD.replace("</CONTROLS>", ""), (True, False, False, False, False)),
    "reordered": (
        _replace_controls(FIFTY)
        .replace("<CONTROLS>", "#")
        .replace("</CONTROLS>", "<CONTROLS>")
        .replace("#", "</CONTROLS>"),
        (True, False, False, False, False),
    ),
    "controls first": (
        "<CONTROLS>" + ",".join(FIFTY) + "</CONTROLS><REASONING>r</REASONING>",
        (True, True, False, True, True),
    ),
    "49 controls": (_replace_controls(FIFTY[:49]), (True, True, True, False, True)),
    "51 controls": (_replace_controls([*FIFTY, "0.1"]), (True, True, True, False, True)),
    "out of bounds": (_replace_controls([*FIFTY[:49], "3.01"]), (True, True, True, True, False)),
    "abc": (_replace_controls([*FIFTY[:49], "abc"]), (True, True, True, False, False)),
    "nan": (_replace_controls([*FIFTY[:49], "nan"]), (True, True, True, False, False)),
    "1e999": (_replace_controls([*FIFTY[:49], "1e999"]), (True, True, True, False, False)),
    "empty item": (_replace_controls([*FIFTY[:49], ""]), (True, True, True, False, False)),
    "text after": (GOOD + "and more", (True, True, False, True, True)),
    "text before": ("Sure! " + GOOD, (True, True, False, True, True)),
    "two controls blocks": (
        GOOD.strip() + "<CONTROLS>1</CONTROLS>",
        (True, True, False, True, True),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_check_format_on_crafted_completions(name: str) -> None:
    text, expected = CASES[name]
    check = check_format(text, steps=STEPS, bound=BOUND)
    got = (
        check.reasoning_tags,
        check.control_tags,
        check.proper_format,
        check.exact_count,
        check.within_bounds,
    )
    assert got == expected
    assert check.all_ok == all(expected)
    unparsed = {"controls unclosed", "reordered", "abc", "nan", "1e999", "empty item"}
    assert (check.controls is None) == (name in unparsed)


def test_parsed_controls_are_the_numbers_written() -> None:
    check = check_format(_replace_controls(["-1.5"] + ["2"] * 48 + ["+.25"]), steps=50, bound=3)
    assert check.controls == [-1.5] + [2.0] * 48 + [0.25]
    assert check_format("<CONTROLS>1,-2</CONTROLS>", steps=2, bound=3).controls == [1.0, -2.0]
    assert check_format("no tags", steps=2, bound=3).controls is None


# -- problems ------------------------------------------------------------------------------------


def test_problems_are_deterministic_and_pure() -> None:
    first = problems(CFG, "train", 5)
    assert first == problems(CFG, "train", 5)
    assert first[3] == train_problem(CFG, 3)
    assert problems(CFG, "train", 3) == first[:3]  # problem i needs nothing before it
    other_seed = CFG.model_copy(update={"seed": 1})
    assert problems(other_seed, "train", 5) != first


def test_splits_are_separate_streams_of_their_ranges() -> None:
    train, test, ood = (problems(CFG, split, 40) for split in ("train", "test", "test_ood"))
    states = {
        split: [(p.position, p.velocity) for p in ps]
        for split, ps in zip(("train", "test", "test_ood"), (train, test, ood), strict=True)
    }
    assert states["train"] != states["test"]
    assert len(set(states["train"]) & set(states["test"])) < 3
    for p in train + test:
        assert -1 <= p.position <= 1 and -1 <= p.velocity <= 1
    assert all(1 <= p.position <= 2 and -1 <= p.velocity <= 1 for p in ood)
    assert {p.split for p in ood} == {"test_ood"}
    with pytest.raises(ConfigError, match=r"data\.sources\[\]\.test"):
        problems(DoubleIntegratorSourceConfig(), "test_ood", 1)


def test_a_problem_shows_its_state_and_its_reference_costs_what_it_says() -> None:
    problem: ControlProblem = train_problem(CFG, 7)
    x, v = f"{problem.position:.2f}", f"{problem.velocity:.2f}"
    assert f"x={x}, v={v} " in problem.prompt
    assert round(problem.position, 2) == problem.position  # the prompt is the problem
    check = check_format(problem.answer, steps=STEPS, bound=BOUND)
    assert check.all_ok and check.controls is not None
    cost = control_cost(
        problem.position, problem.velocity, check.controls, steps=50, horizon=5.0, bound=3.0
    )
    assert cost == pytest.approx(problem.optimal_cost, rel=1e-12)
    assert math.isfinite(problem.optimal_cost)


def test_documents_mask_the_prompt() -> None:
    source = DoubleIntegratorSource(CFG)
    docs = list(source.documents())
    assert len(docs) == CFG.num_train
    problem = train_problem(CFG, 2)
    doc = docs[2]
    assert doc.text == problem.prompt + problem.answer
    assert doc.metadata["segments"] == [(problem.prompt, False), (problem.answer, True)]
    assert "double integrator" in source.describe()


def test_fingerprint_follows_the_training_documents_only() -> None:
    base = DoubleIntegratorSource(CFG).fingerprint()
    assert DoubleIntegratorSource(CFG.model_copy(update={"test": None})).fingerprint() == base
    assert DoubleIntegratorSource(CFG.model_copy(update={"seed": 3})).fingerprint() != base
    assert DoubleIntegratorSource(CFG, format="text").fingerprint() != base


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"position": [1.0, -1.0]}, "position"),
        ({"velocity": [0.5, 0.4]}, "velocity"),
        ({"test": {"position": [3.0, 2.0]}}, "test.position"),
        ({"test": {"velocity": [3.0, 2.0]}}, "test.velocity"),
    ],
)
def test_an_empty_range_is_a_config_error_naming_the_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{field} must be \[low, high\] with low <= high"):
        load_config(raw={"data": {"sources": [{"type": "double_integrator", **fields}]}})


def test_config_builds_the_source_and_feeds_the_evaluator() -> None:
    cfg = load_config(
        raw={
            "data": {"type": "double_integrator", "num_train": 10, "seed": 4},
            "evaluation": {"type": "control_format", "num_problems": 3},
        }
    )
    source_cfg = cfg.data.sources[0]
    assert isinstance(source_cfg, DoubleIntegratorSourceConfig) and source_cfg.seed == 4
    assert getattr(cfg.evaluation, "source", None) == source_cfg
    source = build("source", source_cfg, SourceContext(cfg.data.format, cfg.indexing))
    assert isinstance(source, DoubleIntegratorSource)
    with pytest.raises(ConfigError, match="test_ood"):
        load_config(
            raw={
                "data": {"type": "double_integrator"},
                "evaluation": {"type": "control_format", "splits": ["test_ood"]},
            }
        )
