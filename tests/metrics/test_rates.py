"""Rates and keyed rates: merge equals one pass over the concatenation; Wilson intervals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.rates import Rate, wilson_interval

OUTCOMES = st.lists(st.booleans(), max_size=60)


@settings(deadline=None)
@given(OUTCOMES, OUTCOMES)
def test_rate_merge_equals_one_pass(a: list[bool], b: list[bool]) -> None:
    def run(xs: list[bool]) -> Rate:
        r = Rate()
        for x in xs:
            r = r.update(x)
        return r

    assert run(a).merge(run(b)) == run(a + b)
    value = run(a + b).get()
    if not a + b:
        assert value is None
    else:
        assert value is not None and value.low <= value.rate <= value.high
        assert value.rate == sum(a + b) / len(a + b)


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(81, 263)  # Wikipedia-style textbook example
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError, match=r"^successes must be between 0 and trials$"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match=r"^trials must be positive$"):
        wilson_interval(0, 0)
    assert Rate.from_dict(Rate(2, 5).to_dict()) == Rate(2, 5)


keyed_updates = st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3", "s4"]), st.booleans()), min_size=0, max_size=60)


@given(keyed_updates, keyed_updates)
def test_keyed_rates_merge_equals_one_pass(xs: list, ys: list) -> None:
    from metrics.rates import KeyedRates

    def run(items: list) -> KeyedRates:
        r = KeyedRates()
        for key, hit in items:
            r = r.update(key, hit)
        return r

    merged, single = run(xs).merge(run(ys)), run(xs + ys)
    assert merged.rates == single.rates
    assert merged.get() == single.get()
    value = single.get()
    if not xs + ys:
        assert value is None
        return
    assert value is not None
    keys = {k for k, _ in xs + ys}
    per = {k: [h for kk, h in xs + ys if kk == k] for k in keys}
    assert value.pooled.rate == sum(h for _, h in xs + ys) / len(xs + ys)
    assert value.mean_of_keys == pytest.approx(sum(sum(v) / len(v) for v in per.values()) / len(per))
    assert value.share_with_success == sum(any(v) for v in per.values()) / len(per)
    assert {k: v.trials for k, v in value.per_key.items()} == {k: len(v) for k, v in per.items()}


def test_keyed_rates_leave_the_original_alone_and_window_keys() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from metrics.rates import KeyedRates, window_key

    empty = KeyedRates()
    one = empty.update("s", True)
    assert empty.rates == {} and one.rates["s"].trials == 1
    assert window_key(datetime(2026, 11, 25, 10, 47, 13, tzinfo=UTC), timedelta(hours=1)) == "2026-11-25T10:00:00Z"
    plus_two = timezone(timedelta(hours=2))
    assert window_key(datetime(2026, 11, 25, 12, 47, tzinfo=plus_two), timedelta(minutes=15)) == "2026-11-25T10:45:00Z"
    assert window_key(datetime(2026, 11, 25, 10, 47), timedelta(days=1)) == "2026-11-25T00:00:00Z"  # naive = UTC
    with pytest.raises(ValueError, match=r"^width must be positive$"):
        window_key(datetime(2026, 11, 25), timedelta(0))
