"""Statistics for ablation tables: a mean over seeds with an interval, and paired comparisons.

A handful of seeds is all an ablation usually has, so every number here is meant to be honest at
small n: a bootstrap interval rather than a normal one, Student's t rather than z, and an exact
sign-flip test that assumes nothing about the shape of the differences. Only numpy and the
standard library are used (scipy is not a dependency), so the t distribution is computed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "EXACT_MAX_N",
    "MONTE_CARLO_FLIPS",
    "PairedTest",
    "Summary",
    "paired_test",
    "student_t_sf",
    "summarize",
]

EXACT_MAX_N = 16
"""Up to this many pairs the sign-flip test enumerates all 2^n assignments (65,536 at most)."""

MONTE_CARLO_FLIPS = 100_000
"""Random sign assignments drawn when there are more than ``EXACT_MAX_N`` pairs."""

_FLIP_CHUNK = 10_000  # Monte Carlo flips per block, so memory stays O(chunk * n)
_TIE_RTOL = 1e-9  # |mean| within this (relative) of the observed counts as a tie: float noise

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Summary:
    """Mean of one metric over seeds, with its spread and a bootstrap interval."""

    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); nan when n < 2
    ci_low: float  # percentile bootstrap interval of the mean; equal to mean when n == 1
    ci_high: float  # both nan when n == 0

    def as_dict(self) -> dict[str, float | int]:
        """Flat mapping, ready for a table row or a JSON log line."""
        return {
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }


@dataclass(frozen=True)
class PairedTest:
    """Treatment minus control over the same seeds, with a parametric and an exact test.

    ``t`` is the paired t statistic. It is nan when n < 2. When every difference is the same
    (std 0) it is +inf or -inf by the sign of the mean, with ``p_t`` 0.0, and nan, with ``p_t``
    nan, when that common difference is 0: a constant nonzero shift is as strong as evidence
    gets, while all zeros carries none. ``p_exact`` is defined for every n >= 1.
    """

    n: int
    mean_diff: float
    std_diff: float  # sample standard deviation (ddof=1) of the differences; nan when n < 2
    ci_low: float  # percentile bootstrap interval of the mean difference
    ci_high: float
    t: float
    p_t: float  # two-sided, Student's t with n - 1 degrees of freedom; nan when n < 2
    p_exact: float  # two-sided sign-flip test (exact up to EXACT_MAX_N pairs, Monte Carlo above)

    def as_dict(self) -> dict[str, float | int]:
        """Flat mapping, ready for a table row or a JSON log line."""
        return {
            "n": self.n,
            "mean_diff": self.mean_diff,
            "std_diff": self.std_diff,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "t": self.t,
            "p_t": self.p_t,
            "p_exact": self.p_exact,
        }


def summarize(
    values: Sequence[float], *, level: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Summary:
    """Mean, sample std and a percentile bootstrap interval of the mean of ``values``.

    The bootstrap makes no normality assumption, which matters with a few seeds; it is seeded, so
    the same numbers always give the same table.
    """
    x = _as_finite_array(values, "values")
    _check_bootstrap_args(level, resamples)
    n = int(x.size)
    if n == 0:
        nan = math.nan
        return Summary(n=0, mean=nan, std=nan, ci_low=nan, ci_high=nan)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n >= 2 else math.nan
    low, high = _bootstrap_mean_interval(x, level=level, resamples=resamples, seed=seed)
    return Summary(n=n, mean=mean, std=std, ci_low=low, ci_high=high)


def paired_test(
    treatment: Sequence[float],
    control: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> PairedTest:
    """Compare ``treatment[i]`` with ``control[i]`` (same seed ``i``) through their differences.

    Pairing removes the seed-to-seed variance both arms share, which an unpaired comparison would
    count as noise. Two p-values are given: Student's t (assumes roughly normal differences) and
    the exact sign-flip test (assumes only that, under no effect, each difference is as likely
    positive as negative). With n pairs the sign-flip p-value cannot go below 2 / 2^n, so three
    seeds can never reach 0.05 with it: that is a fact about three seeds, not a flaw of the test.
    """
    a = _as_finite_array(treatment, "treatment")
    b = _as_finite_array(control, "control")
    if a.shape != b.shape:
        raise ValueError(
            "paired_test needs one control value per treatment value (the same seeds): "
            f"got {a.size} treatment and {b.size} control values"
        )
    _check_bootstrap_args(level, resamples)
    d = a - b
    n = int(d.size)
    nan = math.nan
    if n == 0:
        return PairedTest(
            n=0, mean_diff=nan, std_diff=nan, ci_low=nan, ci_high=nan, t=nan, p_t=nan, p_exact=nan
        )
    mean = float(d.mean())
    low, high = _bootstrap_mean_interval(d, level=level, resamples=resamples, seed=seed)
    p_exact = _sign_flip_p(d, seed=seed)
    if n < 2:
        return PairedTest(
            n=n,
            mean_diff=mean,
            std_diff=nan,
            ci_low=low,
            ci_high=high,
            t=nan,
            p_t=nan,
            p_exact=p_exact,
        )
    std = float(d.std(ddof=1))
    if std == 0.0:
        t = math.copysign(math.inf, mean) if mean != 0.0 else nan
    else:
        t = mean / (std / math.sqrt(n))
    p_t = nan if math.isnan(t) else min(1.0, 2.0 * student_t_sf(abs(t), n - 1))
    return PairedTest(
        n=n,
        mean_diff=mean,
        std_diff=std,
        ci_low=low,
        ci_high=high,
        t=t,
        p_t=p_t,
        p_exact=p_exact,
    )


def student_t_sf(t: float, df: int) -> float:
    """Survival function P(T > t) of Student's t distribution with ``df`` degrees of freedom.

    Uses the identity P(|T| > |t|) = I_x(df/2, 1/2) with x = df / (df + t^2), where I is the
    regularized incomplete beta function (Abramowitz & Stegun 26.7.1 / 26.5; Numerical Recipes
    §6.4 "Student's distribution"), so no table or scipy is needed.
    """
    if not df > 0:
        raise ValueError(f"student_t_sf needs df > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    x = df / (df + t * t)  # t * t may overflow to inf: x is then 0, the tail is then 0
    half_two_sided = 0.5 * _regularized_incomplete_beta(0.5 * df, 0.5, x)
    return half_two_sided if t > 0 else 1.0 - half_two_sided


def _regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), after Numerical Recipes (Press et al., 3rd ed., §6.4 ``betai``).

    The continued fraction converges fast only for x < (a + 1) / (a + b + 2); beyond that the
    symmetry I_x(a, b) = 1 - I_{1-x}(b, a) moves the evaluation back into that region.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction for I_x(a, b), by the modified Lentz method (NR §5.2, §6.4 ``betacf``).

    Lentz evaluates the fraction front to back, so it can stop as soon as successive convergents
    agree to ``eps``; ``tiny`` stands in for zero denominators, which would otherwise divide by 0.
    Iterations grow like sqrt(max(a, b)), hence the generous cap for large df.
    """
    eps = 1e-15
    tiny = 1e-300
    max_iterations = 10_000
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < tiny:
        d = tiny
    d = 1.0 / d
    h = d
    for m in range(1, max_iterations + 1):
        m2 = 2 * m
        # Even step of the recurrence.
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < tiny:
            d = tiny
        c = 1.0 + aa / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        h *= d * c
        # Odd step.
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < tiny:
            d = tiny
        c = 1.0 + aa / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(
        f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})"
    )


def _bootstrap_mean_interval(
    x: FloatArray, *, level: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (Efron 1979; Efron & Tibshirani 1993, ch. 13).

    All resamples are drawn at once as one (resamples, n) index array: one numpy call instead of
    a Python loop, and a fixed order of draws, so a seed fully determines the interval.
    """
    n = int(x.size)
    if n == 1:
        # Every resample is the one value; say so exactly rather than through float quantiles.
        value = float(x[0])
        return value, value
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n, size=(resamples, n))
    means = x[indices].mean(axis=1)
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _sign_flip_p(d: FloatArray, *, seed: int) -> float:
    """Two-sided sign-flip (randomization) p-value of the mean difference.

    Fisher's exact randomization test (Fisher 1935, *The Design of Experiments*, §21; Pitman
    1937): under no effect each difference is equally likely to carry either sign, so the p-value
    is the share of the 2^n sign assignments whose |mean| reaches the observed |mean|. Above
    ``EXACT_MAX_N`` pairs, a seeded Monte Carlo of ``MONTE_CARLO_FLIPS`` assignments stands in,
    counting the observed assignment too, (hits + 1) / (draws + 1), so the estimate is never an
    impossible 0 (Phipson & Smyth 2010).
    """
    n = int(d.size)
    observed = abs(float(d.mean()))
    # Ties are decided with a relative tolerance: sign patterns that are mathematically tied
    # (e.g. all-minus against all-plus) must not lose by a rounding error.
    threshold = observed - _TIE_RTOL * max(float(np.abs(d).mean()), np.finfo(np.float64).tiny)
    if n <= EXACT_MAX_N:
        patterns = np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)
        signs = 1.0 - 2.0 * (patterns & 1).astype(np.float64)
        means = np.abs(signs @ d) / n
        return float(np.count_nonzero(means >= threshold)) / float(2**n)
    rng = np.random.default_rng(seed)
    hits = 0
    remaining = MONTE_CARLO_FLIPS
    while remaining > 0:
        size = min(_FLIP_CHUNK, remaining)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, n))
        means = np.abs(signs @ d) / n
        hits += int(np.count_nonzero(means >= threshold))
        remaining -= size
    return (hits + 1) / (MONTE_CARLO_FLIPS + 1)


def _as_finite_array(values: Sequence[float], name: str) -> FloatArray:
    """One-dimensional float64 copy of ``values``; a nan or inf is refused, not averaged in.

    A diverged run that logged nan would otherwise turn every cell of its row into nan with no
    hint of which seed caused it.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = [i for i, v in enumerate(x.tolist()) if not math.isfinite(v)]
        raise ValueError(f"{name} must be finite; non-finite values at positions {bad}")
    return x


def _check_bootstrap_args(level: float, resamples: int) -> None:
    """Refuse settings under which the interval would be meaningless rather than just wide."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
