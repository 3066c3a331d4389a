"""Ablation statistics against hand computations on fixed numbers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from neat.evaluation.statistics import (
    EXACT_MAX_N,
    PairedTest,
    Summary,
    paired_test,
    student_t_sf,
    summarize,
)

# summarize ------------------------------------------------------------------------------------


def test_summarize_mean_std_and_interval() -> None:
    s = summarize([1, 2, 3, 4])
    assert s.n == 4
    assert s.mean == pytest.approx(2.5)
    assert s.std == pytest.approx(math.sqrt(5 / 3))  # squared deviations 2.25+0.25+0.25+2.25 = 5
    assert 1.0 <= s.ci_low <= 2.5 <= s.ci_high <= 4.0
    assert s.ci_low < s.ci_high


def test_summarize_is_reproducible_for_a_seed() -> None:
    values = [0.31, 0.29, 0.35, 0.30, 0.33]
    assert summarize(values, seed=7) == summarize(values, seed=7)
    # Few resamples, so the quantiles interpolate between resample means and the seed shows.
    first, second = summarize(values, resamples=99, seed=7), summarize(values, resamples=99, seed=8)
    assert (first.ci_low, first.ci_high) != (second.ci_low, second.ci_high)


def test_summarize_bootstrap_of_two_points_by_hand() -> None:
    # Resample means of [0, 1] are 0, 0.5, 1 with chance 1/4, 1/2, 1/4: the 2.5 % and 97.5 %
    # quantiles are the extremes.
    s = summarize([0.0, 1.0])
    assert (s.ci_low, s.ci_high) == (0.0, 1.0)


def test_summarize_narrower_level_gives_narrower_interval() -> None:
    values = [1.0, 2.0, 4.0, 8.0, 16.0]
    wide = summarize(values, level=0.95)
    narrow = summarize(values, level=0.5)
    assert wide.ci_low <= narrow.ci_low <= narrow.ci_high <= wide.ci_high


def test_summarize_one_and_zero_values() -> None:
    one = summarize([0.7])
    assert (one.n, one.mean, one.ci_low, one.ci_high) == (1, 0.7, 0.7, 0.7)
    assert math.isnan(one.std)
    empty = summarize([])
    assert empty.n == 0
    assert all(math.isnan(v) for v in (empty.mean, empty.std, empty.ci_low, empty.ci_high))


def test_summarize_constant_values() -> None:
    s = summarize([5.0, 5.0, 5.0])
    assert (s.mean, s.std, s.ci_low, s.ci_high) == (5.0, 0.0, 5.0, 5.0)


@pytest.mark.parametrize("bad", [[1.0, math.nan], [math.inf, 2.0]])
def test_summarize_refuses_non_finite(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="finite"):
        summarize(bad)


@pytest.mark.parametrize(("level", "resamples"), [(0.0, 100), (1.0, 100), (0.95, 0)])
def test_summarize_refuses_bad_settings(level: float, resamples: int) -> None:
    with pytest.raises(ValueError):
        summarize([1.0, 2.0], level=level, resamples=resamples)


def test_summary_is_frozen_and_flattens() -> None:
    s = summarize([1, 2, 3, 4])
    assert s.as_dict() == dataclasses.asdict(s)
    assert list(s.as_dict()) == ["n", "mean", "std", "ci_low", "ci_high"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.mean = 0.0  # type: ignore[misc]
    assert isinstance(s, Summary)


# student_t_sf ---------------------------------------------------------------------------------


def test_t_sf_cauchy_at_one_is_a_quarter() -> None:
    assert student_t_sf(1.0, 1) == pytest.approx(0.25, abs=1e-12)


@pytest.mark.parametrize("t", [-5.0, -0.3, 0.1, 0.5, 2.0, 10.0, 100.0])
def test_t_sf_closed_forms_for_one_and_two_df(t: float) -> None:
    # df=1 is the Cauchy distribution; df=2 has P(T > t) = (1 - t / sqrt(2 + t^2)) / 2.
    assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, rel=1e-10)
    assert student_t_sf(t, 2) == pytest.approx(0.5 * (1 - t / math.sqrt(2 + t * t)), rel=1e-10)


def test_t_sf_df2_at_two() -> None:
    assert student_t_sf(2.0, 2) == pytest.approx(0.5 * (1 - 2 / math.sqrt(6)), abs=1e-12)


def test_t_sf_table_values() -> None:
    # Critical values of two-sided 5 % tests from the usual t table.
    assert student_t_sf(2.228, 10) == pytest.approx(0.025, abs=1e-3)
    assert student_t_sf(12.706, 1) == pytest.approx(0.025, abs=1e-4)
    assert student_t_sf(4.303, 2) == pytest.approx(0.025, abs=1e-4)
    assert student_t_sf(2.776, 4) == pytest.approx(0.025, abs=1e-4)


def test_t_sf_approaches_the_normal_for_large_df() -> None:
    normal = 0.5 * math.erfc(1.96 / math.sqrt(2))  # 0.0249979
    assert student_t_sf(1.96, 1000) == pytest.approx(0.025, abs=1e-3)
    assert student_t_sf(1.96, 1_000_000) == pytest.approx(normal, abs=1e-6)


def test_t_sf_center_symmetry_and_limits() -> None:
    assert student_t_sf(0.0, 5) == 0.5
    for df in (1, 3, 30):
        for t in (0.4, 1.7, 3.2):
            assert student_t_sf(-t, df) == pytest.approx(1 - student_t_sf(t, df), abs=1e-14)
    assert student_t_sf(math.inf, 3) == 0.0
    assert student_t_sf(-math.inf, 3) == 1.0
    assert student_t_sf(1e200, 3) == 0.0
    assert math.isnan(student_t_sf(math.nan, 3))
    with pytest.raises(ValueError, match="df"):
        student_t_sf(1.0, 0)


# paired_test ----------------------------------------------------------------------------------


def test_paired_test_hand_example() -> None:
    r = paired_test([0.6, 0.7, 0.65], [0.5, 0.55, 0.6])  # differences 0.1, 0.15, 0.05
    assert r.n == 3
    assert r.mean_diff == pytest.approx(0.1)
    assert r.std_diff == pytest.approx(0.05)
    assert r.t == pytest.approx(0.1 / (0.05 / math.sqrt(3)))  # 3.4641
    assert r.t == pytest.approx(3.4641, abs=1e-4)
    assert r.p_t == pytest.approx(2 * student_t_sf(0.1 / (0.05 / math.sqrt(3)), 2))
    assert r.p_t == pytest.approx(0.0742, abs=1e-4)
    # Only all-plus and all-minus reach |mean| 0.1; the best mixed pattern is (0.1+0.15-0.05)/3.
    assert r.p_exact == pytest.approx(2 / 8)
    assert 0.05 <= r.ci_low <= 0.1 <= r.ci_high <= 0.15


def test_paired_test_mixed_signs() -> None:
    # Differences 1, -1, 2: mean 2/3, std sqrt(7/3), t = 2/sqrt(7).
    r = paired_test([1.0, 0.0, 2.0], [0.0, 1.0, 0.0])
    assert r.mean_diff == pytest.approx(2 / 3)
    assert r.std_diff == pytest.approx(math.sqrt(7 / 3))
    assert r.t == pytest.approx(2 / math.sqrt(7))
    # df=2 closed form: two-sided p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(2) / 3.
    assert r.p_t == pytest.approx(1 - math.sqrt(2) / 3)
    # Sums +-1 +-1 +-2: |sum| >= 2 for (+,+,+), (+,-,+), (-,+,+) and their mirrors: 6 of 8.
    assert r.p_exact == pytest.approx(6 / 8)
    assert r.ci_low <= r.mean_diff <= r.ci_high


def test_paired_test_sign_is_treatment_minus_control() -> None:
    forward = paired_test([0.6, 0.7, 0.65], [0.5, 0.55, 0.6])
    backward = paired_test([0.5, 0.55, 0.6], [0.6, 0.7, 0.65])
    assert backward.mean_diff == pytest.approx(-forward.mean_diff)
    assert backward.t == pytest.approx(-forward.t)
    assert (backward.p_t, backward.p_exact) == pytest.approx((forward.p_t, forward.p_exact))


def test_paired_test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match=r"3 treatment and 2 control"):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0])


def test_paired_test_single_pair() -> None:
    r = paired_test([0.8], [0.5])
    assert r.n == 1
    assert r.mean_diff == pytest.approx(0.3)
    assert (r.ci_low, r.ci_high) == (r.mean_diff, r.mean_diff)
    assert math.isnan(r.std_diff) and math.isnan(r.t) and math.isnan(r.p_t)
    assert r.p_exact == 1.0  # both signs reach |0.3|


def test_paired_test_empty() -> None:
    r = paired_test([], [])
    assert r.n == 0
    assert all(math.isnan(v) for k, v in r.as_dict().items() if k != "n")


def test_paired_test_constant_shift_and_no_difference() -> None:
    shift = paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shift.std_diff == 0.0
    assert shift.t == math.inf and shift.p_t == 0.0
    assert shift.p_exact == pytest.approx(2 / 8)
    down = paired_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert down.t == -math.inf and down.p_t == 0.0
    same = paired_test([0.5, 0.6], [0.5, 0.6])
    assert same.mean_diff == 0.0 and math.isnan(same.t) and math.isnan(same.p_t)
    assert same.p_exact == 1.0  # every assignment ties with the observed mean 0


def test_paired_test_exact_enumeration_limit() -> None:
    # Sixteen equal positive differences: only all-plus and all-minus tie, exactly 2 / 2^16.
    r = paired_test([1.0] * EXACT_MAX_N, [0.0] * EXACT_MAX_N)
    assert r.p_exact == 2 / 2**EXACT_MAX_N


def test_paired_test_monte_carlo_matches_exact_enumeration() -> None:
    n = EXACT_MAX_N + 1
    d = np.linspace(-0.5, 1.0, n)
    patterns = np.arange(2**n)[:, None] >> np.arange(n)
    signs = 1.0 - 2.0 * (patterns & 1)
    exact = float(np.mean(np.abs(signs @ d) / n >= abs(d.mean()) - 1e-12))
    r = paired_test(d.tolist(), [0.0] * n, seed=3)
    assert r.p_exact == pytest.approx(exact, abs=0.01)  # Monte Carlo sd <= 0.0016
    assert r == paired_test(d.tolist(), [0.0] * n, seed=3)


def test_paired_test_monte_carlo_never_reports_zero() -> None:
    n = 24  # exact p = 2 / 2^24; Monte Carlo counts the observed assignment: >= 1 / 100001
    r = paired_test([1.0] * n, [0.0] * n)
    assert 0.0 < r.p_exact < 1e-4


def test_paired_test_is_frozen_and_flattens() -> None:
    r = paired_test([0.6, 0.7, 0.65], [0.5, 0.55, 0.6])
    assert r.as_dict() == dataclasses.asdict(r)
    assert set(r.as_dict()) == {f.name for f in dataclasses.fields(PairedTest)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.t = 0.0  # type: ignore[misc]
