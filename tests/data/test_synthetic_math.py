"""The synthetic math source: reproducible, correct, within its levels, and held-out tests that
never repeat a training question."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from neat.config import build, load_config
from neat.config.registry import default_type
from neat.data.synthetic_math import (
    OPERAND_RANGES,
    SyntheticMathSource,
    SyntheticMathSourceConfig,
    eval_problem,
    labelled_problems,
    problems,
    train_problem,
)
from neat.errors import ConfigError
from neat.evaluation.exact_match import ExactMatchEvaluatorConfig
from neat.interfaces import IDataSource
from neat.interfaces.contexts import SourceContext

ALL_LEVELS = [1, 2, 3, 4, 5]
ALL_FORMATS = ["symbolic", "spaced", "words"]


def config(**kwargs: Any) -> SyntheticMathSourceConfig:
    fields: dict[str, Any] = {"num_train": 300, "levels": [1, 2], "test": {"levels": [3]}}
    fields.update(kwargs)
    return SyntheticMathSourceConfig.model_validate(fields)


def texts(source: SyntheticMathSource) -> list[str]:
    return [doc.text for doc in source.documents()]


# -- reading a question back: an independent solver ----------------------------------------------

_WORDS = {"plus": "+", "minus": "-", "times": "*"}


def solve(question: str) -> int:
    """Answer a written question with Python arithmetic (and algebra for ax+b=c)."""
    text = question.strip()
    linear = re.fullmatch(r"(?:If )?(\d+)x ?\+ ?(\d+) ?= ?(\d+)(?:, ?x ?=|, what is x\?)", text)
    if linear:
        a, b, c = (int(g) for g in linear.groups())
        assert (c - b) % a == 0, question
        return (c - b) // a
    text = text.removeprefix("What is ").removesuffix("?").rstrip("= ")
    for word, symbol in _WORDS.items():
        text = text.replace(f" {word} ", symbol)
    expr = text.replace(" ", "")
    assert re.fullmatch(r"\d+([-+*]\d+)+", expr), question
    return int(eval(expr))  # digits and + - * only, checked above


def numbers_in(question: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", question)]


# -- reproducibility -----------------------------------------------------------------------------


def test_documents_are_a_pure_function_of_the_seed() -> None:
    first = texts(SyntheticMathSource(config(seed=3)))
    assert first == texts(SyntheticMathSource(config(seed=3)))
    assert first != texts(SyntheticMathSource(config(seed=4)))
    assert len(first) == 300
    # problem i does not depend on how many come before or after it (streaming)
    longer = texts(SyntheticMathSource(config(seed=3, num_train=400)))
    assert longer[:300] == first
    assert first[123].startswith(train_problem(config(seed=3), 123).question)
    assert problems(config(seed=3), "test", 20) == problems(config(seed=3), "test", 20)
    assert problems(config(seed=3), "test", 20) != problems(config(seed=4), "test", 20)


def test_documents_carry_segments_level_and_split() -> None:
    source = SyntheticMathSource(config(levels=[1, 2, 3, 4, 5], test={"formats": ["words"]}))
    assert isinstance(source, IDataSource)
    for doc in source.documents():
        (question, q_trained), (answer, a_trained) = doc.metadata["segments"]
        assert (q_trained, a_trained) == (False, True)
        assert doc.text == question + answer and answer.endswith("\n")
        assert answer[:-1] == str(solve(question))
        assert doc.metadata["split"] == "train"
        assert doc.metadata["level"] in ALL_LEVELS


def test_fingerprint_follows_the_training_documents_only() -> None:
    base = SyntheticMathSource(config()).fingerprint()
    assert base == SyntheticMathSource(config()).fingerprint()
    assert base != SyntheticMathSource(config(seed=1)).fingerprint()
    assert base != SyntheticMathSource(config(num_train=301)).fingerprint()
    assert base != SyntheticMathSource(config(), format="text").fingerprint()
    # the test spec and the mixing weight do not change a single training document
    assert base == SyntheticMathSource(config(test={"levels": [4]})).fingerprint()
    assert base == SyntheticMathSource(config(weight=3.0)).fingerprint()
    assert "300 problems" in SyntheticMathSource(config()).describe()


# -- correctness and ranges ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_answers_are_correct_in_every_format(fmt: str) -> None:
    other = "words" if fmt != "words" else "symbolic"
    cfg = config(levels=ALL_LEVELS, formats=[fmt], num_train=500, test={"formats": [other]})
    for problem in problems(cfg, "train", 500) + problems(cfg, "test", 100):
        assert problem.answer == str(solve(problem.question)), problem


def test_levels_respect_their_ranges() -> None:
    cfg = config(levels=ALL_LEVELS, num_train=1000, test={"formats": ["spaced"]})
    seen: dict[tuple[int, str], int] = {}
    for i in range(1000):
        p = train_problem(cfg, i)
        seen[(p.level, p.operation)] = seen.get((p.level, p.operation), 0) + 1
        lo, hi = OPERAND_RANGES[(p.level, p.operation)]
        assert all(lo <= v <= hi for v in p.controlled), p
        assert p.level == ALL_LEVELS[i % 5]  # levels take turns
        a = p.numbers[0]
        if p.level <= 3 and p.operation != "mul":
            assert all(len(str(n)) == p.level for n in p.numbers), p
        if p.operation == "sub":
            assert p.answer >= 0
        if p.operation == "mul":
            assert len(str(a)) == 3 and 2 <= p.numbers[1] <= 9
        if p.operation == "multi":
            assert len(p.operators) == 2 and all(1 <= n <= 20 for n in p.numbers)
        if p.operation == "linear":
            coefficient, offset, total = p.numbers
            assert 2 <= coefficient <= 9 and coefficient * p.answer + offset == total
    assert set(seen) == set(OPERAND_RANGES)  # every (level, operation) shows up


def test_operations_and_operand_range_narrow_the_draws() -> None:
    shift = {"levels": [2], "operand_range": [0, 99]}  # the training range has no level 2
    cfg = config(levels=[1], operations=["add"], operand_range=[2, 4], test=shift)
    for p in problems(cfg, "train", 200):
        a, b = numbers_in(p.question)
        assert "+" in p.question and 2 <= a <= 4 and 2 <= b <= 4


def test_linear_and_multi_step_questions_read_as_expected() -> None:
    cfg = config(levels=[4, 5], test={"levels": [1]})
    questions = [p.question for p in problems(cfg, "train", 40)]
    assert any(re.fullmatch(r"\d+x\+\d+=\d+,x=", q) for q in questions)
    assert any(re.fullmatch(r"\d+[-+*]\d+[-+*]\d+=", q) for q in questions)


# -- held-out and out-of-distribution tests ------------------------------------------------------


def test_no_training_question_appears_in_any_test_split() -> None:
    cfg = config(levels=[1], operations=["add", "sub"], num_train=3000, test={"levels": [2]})
    train = set(texts(SyntheticMathSource(cfg)))
    train_questions = {t[: t.index("=") + 1] for t in train}
    assert len(train_questions) > 100  # nearly the whole level-1 space is trained on
    test = problems(cfg, "test", 300)
    held = [p for p in test if p.split == "heldout"]
    ood = [p for p in test if p.split == "ood"]
    assert len(held) == len(ood) == 300
    assert not {p.question for p in held + ood} & train_questions
    # held out: level 1 problems no training document asks; OOD: level 2
    assert {p.level for p in held} == {1} and {p.level for p in ood} == {2}
    assert all(max(numbers_in(p.question)) <= 9 for p in held)
    assert all(p.in_distribution for p in held) and not any(p.in_distribution for p in ood)


def test_id_split_draws_what_training_sees() -> None:
    cfg = config(levels=[1], operations=["add"], num_train=3000, test={"levels": [2]})
    train_questions = {t[: t.index("=") + 1] for t in texts(SyntheticMathSource(cfg))}
    drawn = problems(cfg, "test_id", 200)
    assert all(p.split == "id" and p.level == 1 for p in drawn)
    assert {p.question for p in drawn} <= train_questions  # level 1 is small: all trained on
    # independent of the training stream: not the first training documents again
    assert [p.question for p in drawn] != [p.question for p in problems(cfg, "train", 200)]


def test_held_out_problems_are_held_out_in_every_format() -> None:
    cfg = config(levels=[1], operations=["add"], formats=["symbolic", "spaced"], num_train=2000)
    trained = {tuple(numbers_in(t)) for t in texts(SyntheticMathSource(cfg))}
    for p in problems(cfg, "test_heldout", 100):
        assert tuple(numbers_in(p.question + p.answer)) not in trained


def test_format_shift_keeps_the_problems_and_changes_the_writing() -> None:
    cfg = config(levels=[1], test={"formats": ["words"]})
    ood = problems(cfg, "test_ood", 50)
    assert all(p.question.startswith("What is ") and p.level == 1 for p in ood)
    assert all(not p.in_distribution for p in ood)


def test_operand_shift_draws_outside_the_training_range() -> None:
    cfg = config(levels=[2], operand_range=[10, 49], test={"operand_range": [50, 99]})
    for p in problems(cfg, "test_ood", 100):
        assert all(50 <= n <= 99 for n in numbers_in(p.question)), p
    for p in problems(cfg, "test_id", 100) + problems(cfg, "test_heldout", 100):
        assert all(10 <= n <= 49 for n in numbers_in(p.question)), p


def test_overlapping_test_spec_only_yields_problems_outside_training() -> None:
    cfg = config(levels=[1], operand_range=[0, 5], test={"levels": [1], "operand_range": [0, 9]})
    for p in problems(cfg, "test_ood", 200):
        assert max(numbers_in(p.question)) > 5, p


def test_labelled_problems_name_the_operation() -> None:
    cfg = config(levels=[3], test={"levels": [5]})
    for problem, operation in labelled_problems(cfg, "test", 60):
        symbol = {"add": "+", "sub": "-", "mul": "*", "linear": "x"}[operation]
        assert symbol in problem.question


def test_unknown_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        problems(config(), "dev", 3)  # type: ignore[arg-type]


def test_test_problem_alone_matches_the_list() -> None:
    cfg = config()
    listed = problems(cfg, "test_ood", 5)
    assert [eval_problem(cfg, i, "ood").question for i in range(5)] == [p.question for p in listed]


# -- config validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"levels": [6]}, "less than or equal to 5"),
        ({"levels": []}, "must not be empty"),
        ({"levels": [1, 1]}, "more than once"),
        ({"operations": ["div"]}, "add"),
        ({"formats": ["latex"]}, "symbolic"),
        ({"levels": [1], "operations": ["mul"]}, "level 1 has none of the operations"),
        ({"levels": [2], "operand_range": [0, 5]}, "does not meet level 2"),
        ({"operand_range": [9, 1]}, "low <= high"),
        ({"holdout_fraction": 0.0}, "greater than 0"),
        ({"test": {"levels": [1]}}, "no problem outside the training distribution"),
        ({"test": {"levels": [3], "operations": ["linear"]}}, "test: level 3 has none"),
        ({"test": {"levels": [3], "colour": "red"}}, "Extra inputs"),
    ],
)
def test_source_config_rejects(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**fields)


def test_default_source_config_is_valid_and_shifts_level() -> None:
    cfg = SyntheticMathSourceConfig()
    assert cfg.train_spec().levels == (1, 2) and cfg.test_spec().levels == (3,)
    assert default_type("evaluation") == "lm"  # registering exact_match kept the default


def test_experiment_config_wires_the_source_into_the_evaluator(tmp_path: Any) -> None:
    raw = {
        "data": {"type": "synthetic_math", "levels": [1], "test": {"levels": [2]}, "seed": 5},
        "evaluation": {"type": "exact_match", "interval": 10, "num_problems": 8},
    }
    cfg = load_config(raw=raw)
    evaluation = cfg.evaluation
    assert isinstance(evaluation, ExactMatchEvaluatorConfig)
    assert evaluation.source == cfg.data.sources[0]
    assert isinstance(cfg.data.sources[0], SyntheticMathSourceConfig)
    # an explicit source wins
    raw["evaluation"]["source"] = {"type": "synthetic_math", "seed": 9}
    explicit = load_config(raw=raw).evaluation
    assert isinstance(explicit, ExactMatchEvaluatorConfig)
    assert explicit.source is not None and explicit.source.seed == 9
    source = build("source", cfg.data.sources[0], SourceContext(cfg.data.format, cfg.indexing))
    assert isinstance(source, SyntheticMathSource) and source.format == "text"


def test_evaluator_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(
            raw={
                "data": {"type": "synthetic_math"},
                "evaluation": {"type": "exact_match", "num_problem": 3},
            }
        )
    with pytest.raises(ConfigError, match="num_problems"):
        load_config(
            raw={
                "data": {"type": "synthetic_math"},
                "evaluation": {"type": "exact_match", "num_problems": 0},
            }
        )
