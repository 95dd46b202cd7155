"""Window aggregates: exact count/sum/min/max under any split and merge order, quantiles, serialization, drift."""

from __future__ import annotations

import itertools
import json
import math
import random
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from metrics.drift import numeric_drift
from metrics.quantiles import QuantileSketch
from metrics.windows import (
    AGGREGATIONS,
    SketchDrift,
    WindowAggregate,
    WindowValue,
    parse_duration,
    sketch_drift,
    window_start,
)

# Values of wildly different magnitudes (subnormals to 1e298), so a naive running sum loses digits; bounded so
# that no sum of a few hundred of them leaves the float range.
MAGNITUDES = st.builds(lambda m, e: m * 2.0**e, st.floats(-1.0, 1.0), st.integers(-1074, 990))
FINITE = st.one_of(st.floats(-1e300, 1e300, allow_subnormal=True), MAGNITUDES, st.integers(-(10**6), 10**6))
VALUES = st.lists(FINITE, max_size=60)


def build(values: list[float], cuts: list[int]) -> list[WindowAggregate]:
    """One aggregate per chunk of ``values`` between the sorted ``cuts``."""
    bounds = [0, *sorted(c % (len(values) + 1) for c in cuts), len(values)]
    return [WindowAggregate().update_many(values[a:b]) for a, b in itertools.pairwise(bounds)]


def merge_randomly(parts: list[WindowAggregate], rng: random.Random) -> WindowAggregate:
    """Merge in a random tree shape and order: pick two, merge them (either way round), put the result back."""
    pool = list(parts)
    while len(pool) > 1:
        a = pool.pop(rng.randrange(len(pool)))
        b = pool.pop(rng.randrange(len(pool)))
        pool.append(a.merge(b) if rng.random() < 0.5 else b.merge(a))
    return pool[0]


@settings(deadline=None, max_examples=300)
@given(VALUES, st.lists(st.integers(0, 10**6), max_size=8), st.randoms(use_true_random=False))
def test_count_sum_min_max_are_exact_under_any_split_and_merge_order(
    values: list[float], cuts: list[int], rng: random.Random
) -> None:
    merged = merge_randomly(build(values, cuts), rng)
    assert merged.count == len(values)
    assert merged.sum == math.fsum(values)
    if values:
        assert (merged.low, merged.high) == (min(values), max(values))
        value = merged.get()
        assert value is not None and value.sum == math.fsum(values) and value.mean == math.fsum(values) / len(values)
    else:
        assert merged.get() is None and merged.low is None and merged.high is None


@settings(deadline=None, max_examples=200)
@given(VALUES, VALUES, VALUES)
def test_merge_is_associative_and_commutative_on_the_exact_parts(
    a: list[float], b: list[float], c: list[float]
) -> None:
    x, y, z = (WindowAggregate().update_many(v).add_late(len(v) % 3) for v in (a, b, c))
    for m in (x.merge(y).merge(z), x.merge(y.merge(z)), z.merge(x).merge(y), y.merge(z.merge(x))):
        assert (m.count, m.sum, m.low, m.high, m.late) == (
            len(a + b + c),
            math.fsum(a + b + c),
            min(a + b + c, default=None),
            max(a + b + c, default=None),
            len(a) % 3 + len(b) % 3 + len(c) % 3,
        )
        assert m.sketch.count == len(a + b + c)


@settings(deadline=None)
@given(st.lists(st.one_of(FINITE, st.sampled_from([math.nan, math.inf, -math.inf])), max_size=40))
def test_nan_and_infinities_are_skipped(values: list[float]) -> None:
    finite = [v for v in values if math.isfinite(v)]
    agg = WindowAggregate().update_many(values)
    assert (agg.count, agg.sum, agg.sketch.count) == (len(finite), math.fsum(finite), len(finite))
    assert agg.low == min(finite, default=None) and agg.high == max(finite, default=None)


def test_a_running_sum_would_be_wrong_but_the_partials_are_not() -> None:
    values = [1e100, 1.0, -1e100, 1e-100] * 50
    agg = WindowAggregate()
    for v in values:  # one value per update, the worst case for a running float sum
        agg = agg.update_many([v])
    assert sum(values) != math.fsum(values)
    assert agg.sum == math.fsum(values) == 50.0 + 50e-100
    assert len(agg.partials) <= 3


def test_a_sum_beyond_the_float_range_raises_like_fsum() -> None:
    with pytest.raises(OverflowError):
        math.fsum([1.7e308, 1.7e308])
    with pytest.raises(OverflowError, match="float range"):
        WindowAggregate().update_many([1.7e308, 1.7e308])
    big = WindowAggregate().update_many([1.7e308])
    with pytest.raises(OverflowError):
        big.merge(big)


@settings(deadline=None, max_examples=100)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=399), st.lists(st.integers(0, 400), max_size=4))
def test_quantiles_are_exact_below_k_values(values: list[float], cuts: list[int]) -> None:
    """Under k = 400 values the sketch keeps them all: its quantiles are numpy's ("higher": an actual value)."""
    agg = merge_randomly(build(values, cuts), random.Random(len(values)))
    value = agg.get()
    assert value is not None
    for q, got in ((0.5, value.p50), (0.95, value.p95), (0.99, value.p99)):
        assert got == float(np.quantile(values, q, method="higher"))
    assert value.min <= value.p50 <= value.p95 <= value.p99 <= value.max


def test_quantiles_within_the_kll_rank_error_for_100k_values() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(6, 0.8, 100_000)
    parts = [WindowAggregate().update_many(chunk) for chunk in np.array_split(values, 7)]
    agg = merge_randomly(parts, random.Random(1))
    value = agg.get()
    assert value is not None and value.count == 100_000
    ordered = np.sort(values)
    for q, got in ((0.5, value.p50), (0.95, value.p95), (0.99, value.p99)):
        rank = np.searchsorted(ordered, got, side="right") / len(ordered)
        assert abs(rank - q) <= 0.01, (q, rank)
    assert value.sum == math.fsum(values.tolist()) and value.min == values.min() and value.max == values.max()


def test_value_by_aggregation() -> None:
    agg = WindowAggregate().update_many([0.0, 1.0, 1.0, 0.0, 1.0]).add_late(2)
    expected = {"mean": 0.6, "rate": 0.6, "count": 5.0, "sum": 3.0, "min": 0.0, "max": 1.0}
    expected |= {"p50": 1.0, "p95": 1.0, "p99": 1.0}
    assert {a: agg.value(a) for a in AGGREGATIONS} == expected
    assert agg.get() == WindowValue(5, 3.0, 0.6, 0.0, 1.0, 1.0, 1.0, 1.0, 2)
    empty = WindowAggregate().add_late(3)
    assert empty.get() is None and empty.late == 3
    assert {a: empty.value(a) for a in AGGREGATIONS} == {a: (0.0 if a == "count" else None) for a in AGGREGATIONS}
    with pytest.raises(ValueError, match=r"unknown aggregation 'p42'"):
        agg.value("p42")


def test_late_values_are_counted_not_aggregated_and_add_under_merge() -> None:
    a = WindowAggregate().update_many([1.0]).add_late().add_late(4)
    b = WindowAggregate().add_late(2)
    assert (a.late, b.late, a.merge(b).late, b.merge(a).late) == (5, 2, 7, 7)
    assert a.merge(b).count == 1 and a.add_late(0) == a
    with pytest.raises(ValueError, match="n must be >= 0"):
        a.add_late(-1)


def test_update_with_nothing_finite_returns_the_same_state() -> None:
    agg = WindowAggregate().update_many([2.0])
    assert agg.update_many([]) is agg and agg.update_many([math.nan]) is agg
    assert WindowAggregate().merge(agg) == agg and agg.merge(WindowAggregate()) == agg


@settings(deadline=None)
@given(VALUES, st.integers(0, 5))
def test_dict_round_trip_is_json_safe(values: list[float], late: int) -> None:
    agg = WindowAggregate().update_many(values).add_late(late)
    data = json.loads(json.dumps(agg.to_dict(), allow_nan=False))
    back = WindowAggregate.from_dict(data)
    assert back == agg and back.sum == math.fsum(values)
    assert set(data) == {"n", "s", "lo", "hi", "q", "late"}


GOOD = WindowAggregate().update_many([1.0, 2.0, 3.0]).to_dict()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must be a dict"),
        ({**GOOD, "extra": 1}, "unknown key"),
        ({k: v for k, v in GOOD.items() if k != "q"}, r"missing key\(s\) \['q'\]"),
        ({**GOOD, "n": -1}, "n must be an integer >= 0"),
        ({**GOOD, "n": True}, "n must be an integer >= 0"),
        ({**GOOD, "n": "3"}, "n must be an integer >= 0"),
        ({**GOOD, "late": 1.5}, "late must be an integer >= 0"),
        ({**GOOD, "s": "6"}, "s must be a list of finite numbers"),
        ({**GOOD, "s": [float("nan")]}, "s must be a list of finite numbers"),
        ({**GOOD, "s": [10**400]}, "s must be a list of finite numbers"),
        ({**GOOD, "lo": None}, "lo and hi must be finite numbers"),
        ({**GOOD, "lo": 5.0}, "lo <= hi"),
        ({**GOOD, "hi": float("inf")}, "lo and hi must be finite numbers"),
        ({"n": 0, "s": [1.0], "lo": None, "hi": None, "q": "400:"}, "an empty window"),
        ({**GOOD, "q": 7}, "q must be a sketch's text"),
        ({**GOOD, "q": "400:bm90IGEgc2tldGNo"}, "q is not a quantile sketch"),
        ({**GOOD, "q": "x:AAAA"}, "q is not a quantile sketch"),
        ({**GOOD, "q": "400:!!!"}, "q is not a quantile sketch"),
        ({**GOOD, "n": 4}, "the sketch holds 3 values but n is 4"),
        ({"n": 0, "s": [], "lo": None, "hi": None, "q": "0:"}, r"q's k must be within \[8, 65535\], got 0"),
    ],
)
def test_malformed_dicts_raise_value_error(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WindowAggregate.from_dict(data)  # type: ignore[arg-type]


def test_from_dict_accepts_a_missing_late_and_integer_bounds() -> None:
    data = {k: v for k, v in GOOD.items() if k != "late"} | {"lo": 1, "hi": 3}
    agg = WindowAggregate.from_dict(data)
    assert agg.late == 0 and agg.low == 1.0 and isinstance(agg.low, float)
    assert WindowAggregate.from_dict(WindowAggregate().to_dict()) == WindowAggregate()


@pytest.mark.parametrize(
    ("ts", "width", "start"),
    [(0, 60, 0), (59.999, 60, 0), (60, 60, 60), (1_700_000_123.5, 300, 1_700_000_100), (-0.5, 60, -60), (7, 1, 7)],
)
def test_window_start_floors_to_the_epoch_grid(ts: float, width: int, start: int) -> None:
    assert window_start(ts, width) == start and isinstance(window_start(ts, width), int)


@pytest.mark.parametrize("width", [0, -60])
def test_window_start_needs_a_positive_width(width: int) -> None:
    with pytest.raises(ValueError, match="width_s must be positive"):
        window_start(100, width)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("2h", 7200), ("1d", 86400), ("45", 45), (" 10 m ", 600), (300, 300), (60.0, 60)],
)
def test_parse_duration(text: str | int | float, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1.5h", "5 minutes", "-5m", "0s", "0", "5w", "m", "5ms", "1h30m", 0, -3, 1.5])
def test_parse_duration_names_the_bad_text(text: str | int | float) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid duration {text!r}")):
        parse_duration(text)


@pytest.mark.parametrize("text", [True, None, float("nan"), float("inf"), ["5m"]])
def test_parse_duration_refuses_non_durations(text: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)  # type: ignore[arg-type]


def normal(seed: int, shift: float, n: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, n)


def agg_of(values: np.ndarray) -> WindowAggregate:
    return WindowAggregate().update_many(values.tolist())


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "shift", "drifted"),
    [
        (500, 500, 0.0, False),
        (2000, 2000, 0.0, False),
        (20_000, 5000, 0.0, False),
        (500, 500, 1.0, True),
        (2000, 3000, 0.8, True),
        (20_000, 20_000, 1.5, True),
    ],
)
def test_sketch_drift_agrees_with_numeric_drift(n_ref: int, n_cur: int, shift: float, drifted: bool) -> None:
    ref, cur = normal(1, 0.0, n_ref), normal(2, shift, n_cur)
    raw = numeric_drift(ref, cur)
    sketched = sketch_drift(agg_of(ref), agg_of(cur))
    assert sketched is not None and raw.statistic is not None
    assert sketched.drifted == raw.drifted == drifted
    assert abs(sketched.ks_d - raw.details["ks_statistic"]) <= 0.02
    # KLL compaction is randomized, so a sketch's tails (and the PSI's sparse outer bins) move a little run to run
    assert abs(sketched.psi - raw.statistic) <= max(0.02, 0.15 * raw.statistic)
    assert (sketched.n_ref, sketched.n_cur) == (n_ref, n_cur)


@settings(deadline=None, max_examples=50)
@given(
    st.lists(st.integers(-50, 50), min_size=30, max_size=300), st.lists(st.integers(-50, 50), min_size=30, max_size=300)
)
def test_exact_sketches_give_the_two_sample_ks_statistic_and_asymptotic_p_value(a: list[int], b: list[int]) -> None:
    """Under k values the sketches hold every value: D is ks_2samp's, the p-value its asymptotic one (ties too)."""
    result = sketch_drift(WindowAggregate().update_many(a), WindowAggregate().update_many(b), min_n=30)
    assert result is not None
    exact = stats.ks_2samp(a, b, method="asymp")
    assert result.ks_d == pytest.approx(exact.statistic, abs=1e-12)
    assert result.p_value == pytest.approx(exact.pvalue, rel=1e-9, abs=1e-300)
    assert result.psi >= 0.0


def test_sketch_drift_of_identical_windows_is_nothing() -> None:
    agg = agg_of(normal(3, 0.0, 5000))
    result = sketch_drift(agg, agg)
    assert result == SketchDrift(0.0, 0.0, 1.0, False, 5000, 5000)


def test_sketch_drift_thresholds_and_alpha_decide_drifted() -> None:
    ref, cur = agg_of(normal(4, 0.0, 2000)), agg_of(normal(5, 0.3, 2000))
    result = sketch_drift(ref, cur)
    assert result is not None and result.p_value < 1e-6 and 0.05 < result.psi < 0.2 and not result.drifted
    loose = sketch_drift(ref, cur, psi_threshold=0.05)
    assert loose is not None and loose.drifted
    strict = sketch_drift(ref, cur, psi_threshold=0.05, alpha=result.p_value / 2)
    assert strict is not None and not strict.drifted


def test_sketch_drift_needs_min_n_on_each_side() -> None:
    small, large = agg_of(normal(6, 0.0, 29)), agg_of(normal(7, 0.0, 1000))
    assert sketch_drift(small, large) is None and sketch_drift(large, small) is None
    assert sketch_drift(small, large, min_n=29) is not None
    assert sketch_drift(WindowAggregate(), large, min_n=0) is None
    assert sketch_drift(WindowAggregate(sketch=QuantileSketch()), WindowAggregate(), min_n=0) is None
