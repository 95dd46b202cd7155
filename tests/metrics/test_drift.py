"""Drift statistics against plain formulas and SciPy, and their error rates over many seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from metrics.drift import categorical_drift, embedding_drift, median_bandwidth, numeric_drift, psi


def _unit(rng: np.random.Generator, n: int, centre: np.ndarray, spread: float = 1.0) -> np.ndarray:
    v = centre + spread * rng.normal(size=(n, len(centre)))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_mmd2_is_the_unbiased_estimate_written_out() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 5)), rng.normal(0.3, 1, size=(30, 5))
    got = embedding_drift(x, y, min_n=10, permutations=50)
    bw = got.details["bandwidth"]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * bw * bw))

    xx = sum(k(a, b) for i, a in enumerate(x) for j, b in enumerate(x) if i != j) / (40 * 39)
    yy = sum(k(a, b) for i, a in enumerate(y) for j, b in enumerate(y) if i != j) / (30 * 29)
    xy = sum(k(a, b) for a in x for b in y) / (40 * 30)
    assert got.statistic == pytest.approx(xx + yy - 2 * xy, abs=1e-9)
    assert got.details["centroid_distance"] == pytest.approx(float(np.linalg.norm(x.mean(0) - y.mean(0))))
    assert bw == pytest.approx(median_bandwidth(np.random.default_rng(20261130).permutation(np.vstack([x, y]))))


def test_embeddings_of_another_kind_drift_and_the_answer_is_repeatable() -> None:
    rng = np.random.default_rng(2)
    dim = 384
    a, b = rng.normal(size=dim), rng.normal(size=dim)
    reference = _unit(rng, 300, a / np.linalg.norm(a) * 4)
    current = _unit(rng, 300, (a / np.linalg.norm(a) + b / np.linalg.norm(b)) * 2.0)
    got = embedding_drift(reference, current)
    assert got.drifted and got.p_value is not None and got.p_value < 0.01 and got.statistic > 0.001
    assert got == embedding_drift(reference, current)  # a fixed seed: the same answer every time


def test_embeddings_from_one_distribution_rarely_drift() -> None:
    centre = np.random.default_rng(0).normal(size=64) * 0.5
    drifted = 0
    p_values = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        got = embedding_drift(_unit(rng, 100, centre), _unit(rng, 100, centre), seed=seed)
        drifted += got.drifted
        p_values.append(got.p_value)
    assert drifted <= 3  # alpha = 0.01: expected 0.6 of 60
    assert 0.3 < float(np.median(p_values)) < 0.7  # p-values spread over (0, 1] under no drift


def test_psi_and_js_by_hand() -> None:
    reference = np.repeat([1.0, 2.0, 3.0, 4.0], 25)  # quartiles: bins at 2, 3, 4 (ties merged)
    current = np.repeat([1.0, 2.0, 3.0, 4.0], [10, 20, 30, 40])
    value, js = psi(reference, current, bins=4)
    p, q = np.array([0.25] * 4), np.array([0.1, 0.2, 0.3, 0.4])
    assert value == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    assert js == pytest.approx(float(jensenshannon(p, q, base=2)))


def test_numeric_drift_uses_ks_and_flags_a_shift() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.lognormal(0, 1, 400), rng.lognormal(0.6, 1, 400)
    got = numeric_drift(ref, cur)
    assert got.drifted and got.method == "psi" and got.statistic >= 0.2
    assert got.p_value == pytest.approx(stats.ks_2samp(ref, cur).pvalue)
    assert got.details["js_distance"] == pytest.approx(psi(ref, cur)[1])


def test_numeric_and_categorical_false_positive_rates() -> None:
    numeric = categorical = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        numeric += numeric_drift(rng.normal(size=300), rng.normal(size=300)).drifted
        labels = ["gpt", "claude", "llama"]
        categorical += categorical_drift(rng.choice(labels, 300).tolist(), rng.choice(labels, 300).tolist()).drifted
    assert numeric <= 6 and categorical <= 6  # alpha = 0.01: expected 2 of 200


def test_categorical_drift_uses_chi_square() -> None:
    ref = ["v1"] * 60 + ["v2"] * 40
    cur = ["v1"] * 20 + ["v2"] * 50 + ["v3"] * 30
    got = categorical_drift(ref, cur)
    table = [[60, 40, 0], [20, 50, 30]]
    assert got.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)
    assert got.statistic == pytest.approx(float(jensenshannon([0.6, 0.4, 0], [0.2, 0.5, 0.3], base=2)))
    assert got.drifted and got.details["categories"] == 3
    one = categorical_drift(["a"] * 40, ["a"] * 40)
    assert (one.statistic, one.p_value, one.drifted) == (0.0, 1.0, False)


def test_tiny_windows_are_insufficient_data() -> None:
    for got in (
        embedding_drift(np.ones((5, 3)), np.ones((50, 3))),
        numeric_drift([1.0] * 50, [2.0] * 29),
        categorical_drift(["a"], ["b"] * 100),
    ):
        assert got.insufficient_data and not got.drifted and got.statistic is None and got.p_value is None
