"""Cohort statistics against SciPy, published worked examples, and their error rates over many seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from metrics.stats import compare_means, compare_rates, newcombe, quantile_interval, wilson


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), st.sampled_from([0.9, 0.95]))
def test_wilson_is_scipys_wilson_interval(kn: tuple[int, int], confidence: float) -> None:
    k, n = kn
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = wilson(k, n, confidence)
    assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(expected.high, abs=1e-12)


@pytest.mark.parametrize(
    ("args", "expected"),
    [  # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (p1 - p2 there; b - a here)
        ((48, 80, 56, 70), (0.0524, 0.3339)),
        ((3, 10, 9, 10), (0.1705, 0.8090)),
        ((0, 29, 5, 56), (-0.0381, 0.1926)),
        ((0, 20, 0, 10), (-0.1611, 0.2775)),
        ((10, 10, 10, 10), (-0.2775, 0.2775)),
    ],
)
def test_newcombe_matches_the_published_examples(
    args: tuple[int, int, int, int], expected: tuple[float, float]
) -> None:
    assert [round(x, 4) for x in newcombe(*args)] == list(expected)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.data())
def test_the_z_test_is_the_chi_square_test_of_the_2x2_table(n_a: int, n_b: int, data: st.DataObject) -> None:
    k_a, k_b = data.draw(st.integers(0, n_a)), data.draw(st.integers(0, n_b))
    got = compare_rates(k_a, n_a, k_b, n_b, min_n=1)
    assert got.difference == pytest.approx(k_b / n_b - k_a / n_a)
    if 0 < k_a + k_b < n_a + n_b:
        table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
        expected = stats.chi2_contingency(table, correction=False).pvalue
        assert got.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_a_planted_thumbs_up_difference_is_found() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.random(500) < 0.30, rng.random(500) < 0.70
    got = compare_rates(int(a.sum()), 500, int(b.sum()), 500)
    assert got.significant and got.p_value is not None and got.p_value < 0.001
    assert got.difference_ci_low is not None and got.difference_ci_high is not None
    assert got.difference_ci_low < 0.40 < got.difference_ci_high and got.warning is None


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_one_distribution_is_significant_in_about_alpha_of_seeds(rate: float) -> None:
    """200 seeds of two cohorts drawn from one rate: the share called significant is about alpha (0.05)."""
    significant = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        k_a, k_b = int((rng.random(400) < rate).sum()), int((rng.random(400) < rate).sum())
        significant += compare_rates(k_a, 400, k_b, 400).significant
    # binomial(200, 0.05): mean 10, sd 3.1; allow 3 sd either way
    assert 1 <= significant <= 20, significant


def test_small_or_degenerate_cohorts_are_never_significant() -> None:
    tiny = compare_rates(0, 10, 10, 10)
    assert tiny.p_value is not None and tiny.p_value < 1e-4
    assert not tiny.significant and tiny.warning == "a has 10 observations, under the minimum of 30"
    rare = compare_rates(0, 400, 3, 400)
    assert not rare.significant and "normal approximation" in (rare.warning or "")
    empty = compare_rates(0, 0, 5, 50)
    assert empty.a.value is None and empty.difference is None and not empty.significant
    flat = compare_means([1.0] * 40, [1.0] * 40)
    assert flat.p_value == 1.0 and not flat.significant and "no variation" in (flat.warning or "")
    with pytest.raises(ValueError, match="k must be between 0 and n"):
        wilson(5, 4)


def test_means_agree_with_scipy_and_cover_the_true_difference() -> None:
    """Welch's p-value and interval and the Mann-Whitney p-value are SciPy's; over 300 seeds the 95% interval of
    b - a covers the true difference about 95% of the time (lognormal latencies, different spreads)."""
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(6.0, 0.5, 200), rng.lognormal(6.1, 0.8, 150)
    got = compare_means(a, b, with_p95=True)
    welch = stats.ttest_ind(b, a, equal_var=False)
    assert got.p_value == pytest.approx(welch.pvalue) and got.difference == pytest.approx(b.mean() - a.mean())
    assert (got.difference_ci_low, got.difference_ci_high) == pytest.approx(tuple(welch.confidence_interval(0.95)))
    assert got.p_value_mann_whitney == pytest.approx(stats.mannwhitneyu(b, a).pvalue)
    assert got.a.p95 == pytest.approx(np.quantile(a, 0.95)) and got.a.p95_ci_low <= got.a.p95 <= got.a.p95_ci_high
    true_difference = math.exp(6.1 + 0.8**2 / 2) - math.exp(6.0 + 0.5**2 / 2)
    covered = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        c = compare_means(rng.lognormal(6.0, 0.5, 200), rng.lognormal(6.1, 0.8, 200))
        covered += c.difference_ci_low <= true_difference <= c.difference_ci_high  # type: ignore[operator]
    assert 0.90 <= covered / 300 <= 0.99, covered


def test_means_of_one_distribution_are_significant_in_about_alpha_of_seeds() -> None:
    significant = sum(
        compare_means(*np.random.default_rng(seed).exponential(1.0, (2, 300))).significant for seed in range(200)
    )
    assert 1 <= significant <= 20, significant


def test_the_p95_interval_covers_the_true_p95() -> None:
    true_p95 = -math.log(0.05)  # exponential(1)
    covered = 0
    for seed in range(300):
        _, low, high = quantile_interval(np.random.default_rng(seed).exponential(1.0, 300))
        covered += low <= true_p95 <= high
    assert covered / 300 >= 0.92, covered


def test_summaries_give_what_scipy_gives_from_the_same_statistics() -> None:
    from metrics.stats import Summary, compare_summaries, quantile_ranks

    a = Summary(n=120, mean=10.0, var=4.0)
    b = Summary(n=80, mean=10.9, var=9.0)
    got = compare_summaries(a, b)
    expected = stats.ttest_ind_from_stats(10.9, 3.0, 80, 10.0, 2.0, 120, equal_var=False)
    assert got.p_value == pytest.approx(expected.pvalue) and got.difference == pytest.approx(0.9)
    assert quantile_ranks(1000) == (936, 964) and quantile_ranks(10) == (8, 10)
    values = np.random.default_rng(4).exponential(1.0, 500)
    low, high = quantile_ranks(500)
    ordered = np.sort(values)
    assert quantile_interval(values)[1:] == (ordered[low - 1], ordered[high - 1])
