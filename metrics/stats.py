"""Two cohorts side by side: rates and means with confidence intervals and significance tests (SciPy).

- Rates (a 0/1 outcome: thumbs up, regenerated, error…): Wilson score interval per side, Newcombe's hybrid
  score interval for the difference b - a (his method 10), two-proportion z-test (pooled).
- Means (edit ratio, latency, cost…): t interval per side, Welch's t-test and its interval for the difference,
  and a Mann-Whitney U p-value beside it (heavy tails are normal for latencies and costs); p95 per side with a
  distribution-free interval (order statistics of the binomial).

A side under ``min_n`` observations, or data that breaks the test's assumptions, gets a ``warning`` and is never
``significant``.

Example (Newcombe 1998, example (a): 56/70 against 48/80)::

    >>> c = compare_rates(48, 80, 56, 70)
    >>> round(c.difference, 4), round(c.difference_ci_low, 4), round(c.difference_ci_high, 4)
    (0.2, 0.0524, 0.3339)
    >>> c.test, c.significant, round(c.p_value, 4)
    ('two-proportion z', True, 0.008)
    >>> compare_rates(3, 10, 9, 10).warning
    'a has 10 observations, under the minimum of 30'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_N = 30


@dataclass(frozen=True, slots=True)
class Side:
    """One cohort: observations, the estimate (a rate or a mean) and its confidence interval."""

    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    p95: float | None = None
    p95_ci_low: float | None = None
    p95_ci_high: float | None = None


@dataclass(frozen=True, slots=True)
class Comparison:
    """Cohort b against cohort a: ``difference`` is b - a."""

    kind: str  # "rate" or "mean"
    a: Side
    b: Side
    difference: float | None
    difference_ci_low: float | None
    difference_ci_high: float | None
    p_value: float | None
    test: str
    significant: bool
    warning: str | None
    p_value_mann_whitney: float | None = None


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (the same as SciPy's ``binomtest(...).proportion_ci``).

    >>> [round(x, 4) for x in wilson(81, 263)]
    [0.2553, 0.3662]
    """
    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and n ({k} of {n})")
    z = _z(confidence)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) of ``p_b - p_a`` from the two Wilson intervals."""
    p_a, p_b = k_a / n_a, k_b / n_b
    low_a, high_a = wilson(k_a, n_a, confidence)
    low_b, high_b = wilson(k_b, n_b, confidence)
    d = p_b - p_a
    low = d - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
    high = d + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    return low, high


def _too_small(n_a: int, n_b: int, min_n: int) -> str | None:
    for name, n in (("a", n_a), ("b", n_b)):
        if n < min_n:
            return f"{name} has {n} observation{'s' * (n != 1)}, under the minimum of {min_n}"
    return None


def compare_rates(
    k_a: int, n_a: int, k_b: int, n_b: int, alpha: float = DEFAULT_ALPHA, min_n: int = DEFAULT_MIN_N
) -> Comparison:
    """Rates ``k_a / n_a`` and ``k_b / n_b``: Wilson per side, Newcombe for b - a, the pooled two-proportion z-test."""
    confidence = 1 - alpha
    a = Side(n_a, k_a / n_a, *wilson(k_a, n_a, confidence)) if n_a else Side(0, None, None, None)
    b = Side(n_b, k_b / n_b, *wilson(k_b, n_b, confidence)) if n_b else Side(0, None, None, None)
    if not n_a or not n_b:
        return Comparison("rate", a, b, None, None, None, None, "two-proportion z", False, _too_small(n_a, n_b, 1))
    low, high = newcombe(k_a, n_a, k_b, n_b, confidence)
    pooled = (k_a + k_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    difference = k_b / n_b - k_a / n_a
    p_value = 1.0 if se == 0 else float(2 * stats.norm.sf(abs(difference) / se))
    warning = _too_small(n_a, n_b, min_n)
    if warning is None and min(k_a + k_b, n_a + n_b - k_a - k_b) < 10:
        warning = "fewer than 10 events (or non-events) in all: the z-test's normal approximation is unreliable"
    significant = warning is None and p_value < alpha
    return Comparison("rate", a, b, difference, low, high, p_value, "two-proportion z", significant, warning)


def quantile_ranks(n: int, q: float = 0.95, confidence: float = 0.95) -> tuple[int, int]:
    """1-based ranks of the order statistics that bound the ``q`` quantile of n values at ``confidence``:
    ``binom.ppf((1 - confidence) / 2, n, q)`` and one past ``binom.ppf((1 + confidence) / 2, n, q)``, within 1..n.

    >>> quantile_ranks(1000)
    (936, 964)
    """
    low = int(stats.binom.ppf((1 - confidence) / 2, n, q))
    high = int(stats.binom.ppf(1 - (1 - confidence) / 2, n, q)) + 1
    return max(1, low), min(n, high)


def quantile_interval(values: np.ndarray, q: float = 0.95, confidence: float = 0.95) -> tuple[float, float, float]:
    """The ``q`` quantile of ``values`` (linear interpolation) and a distribution-free interval for it: the order
    statistics at :func:`quantile_ranks` (wider when n is small).

    >>> [round(x, 2) for x in quantile_interval(np.arange(1.0, 1001.0))]
    [950.05, 936.0, 964.0]
    """
    x = np.sort(np.asarray(values, float))
    if len(x) == 0:
        raise ValueError("no values")
    low, high = quantile_ranks(len(x), q, confidence)
    return float(np.quantile(x, q)), float(x[low - 1]), float(x[high - 1])


@dataclass(frozen=True, slots=True)
class Summary:
    """What the means comparison needs of one cohort, computable in SQL: count, mean, sample variance (ddof 1),
    and optionally p95 with its interval (:func:`quantile_ranks`)."""

    n: int
    mean: float | None
    var: float | None
    p95: float | None = None
    p95_ci_low: float | None = None
    p95_ci_high: float | None = None

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray, with_p95: bool = False, confidence: float = 0.95) -> Summary:
        x = np.asarray(values, float)
        if len(x) == 0:
            return cls(0, None, None)
        var = float(x.var(ddof=1)) if len(x) > 1 else None
        if not with_p95:
            return cls(len(x), float(x.mean()), var)
        return cls(len(x), float(x.mean()), var, *quantile_interval(x, 0.95, confidence))


def _side(s: Summary, confidence: float) -> Side:
    if s.n == 0 or s.mean is None:
        return Side(0, None, None, None)
    half = 0.0 if s.var is None else float(stats.t.ppf(0.5 + confidence / 2, s.n - 1) * math.sqrt(s.var / s.n))
    return Side(s.n, s.mean, s.mean - half, s.mean + half, s.p95, s.p95_ci_low, s.p95_ci_high)


def compare_summaries(
    a: Summary,
    b: Summary,
    alpha: float = DEFAULT_ALPHA,
    min_n: int = DEFAULT_MIN_N,
    mann_whitney_p: float | None = None,
) -> Comparison:
    """Means from summaries: Welch's t-test (Welch-Satterthwaite degrees of freedom) and its interval for b - a;
    ``mann_whitney_p`` is reported beside it as given."""
    confidence = 1 - alpha
    side_a, side_b = _side(a, confidence), _side(b, confidence)
    if a.n < 2 or b.n < 2 or a.var is None or b.var is None or a.mean is None or b.mean is None:
        warning = _too_small(a.n, b.n, max(2, min_n))
        return Comparison("mean", side_a, side_b, None, None, None, None, "Welch t", False, warning, mann_whitney_p)
    difference = b.mean - a.mean
    va, vb = a.var / a.n, b.var / b.n
    warning = _too_small(a.n, b.n, min_n)
    if va + vb == 0:
        p_value = 1.0 if difference == 0 else 0.0
        low = high = difference
        warning = warning or "no variation on either side: the t-test is undefined"
    else:
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va * va / (a.n - 1) + vb * vb / (b.n - 1))
        p_value = float(2 * stats.t.sf(abs(difference) / se, df))
        half = float(stats.t.ppf(1 - alpha / 2, df)) * se
        low, high = difference - half, difference + half
    significant = warning is None and p_value < alpha
    return Comparison(
        "mean", side_a, side_b, difference, low, high, p_value, "Welch t", significant, warning, mann_whitney_p
    )


def mann_whitney_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Two-sided Mann-Whitney U p-value of b against a (None when a side is empty)."""
    if len(a) == 0 or len(b) == 0:
        return None
    return float(stats.mannwhitneyu(np.asarray(b, float), np.asarray(a, float), alternative="two-sided").pvalue)


def compare_means(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    min_n: int = DEFAULT_MIN_N,
    with_p95: bool = False,
) -> Comparison:
    """Means of ``a`` and ``b``: Welch's t-test and interval for b - a, Mann-Whitney U beside it (two-sided)."""
    confidence = 1 - alpha
    sa, sb = Summary.of(a, with_p95, confidence), Summary.of(b, with_p95, confidence)
    mw = mann_whitney_p(a, b) if sa.n >= 2 and sb.n >= 2 else None
    return compare_summaries(sa, sb, alpha, min_n, mw)
