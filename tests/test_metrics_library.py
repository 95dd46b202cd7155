"""The pure metric library: properties with hypothesis, merge == one pass over the concatenation."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from metrics.edit import EditStats
from metrics.novelty import RecentOutputs, novelty, novelty_many
from metrics.pii import iban_ok, luhn_ok, pii_counts, redact
from metrics.quantiles import QuantileSketch
from metrics.rates import Rate, wilson_interval
from metrics.refresh import ask_key, normalize_input, within_window

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
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert Rate.from_dict(Rate(2, 5).to_dict()) == Rate(2, 5)


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.floats(0, 1), st.integers(0, 90)), max_size=40), st.integers(0, 40))
def test_edit_stats_merge_equals_one_pass(rows: list[tuple[int, float, int]], cut: int) -> None:
    def run(xs: list[tuple[int, float, int]]) -> EditStats:
        s = EditStats()
        for d, r, w in xs:
            s = s.update(d, r, w)
        return s

    merged, single = run(rows[:cut]).merge(run(rows[cut:])), run(rows)
    assert (merged.count, merged.distance_sum, merged.word_distance_sum, merged.accepted) == (
        single.count, single.distance_sum, single.word_distance_sum, single.accepted)  # fmt: skip
    assert math.isclose(merged.ratio_sum, single.ratio_sum, abs_tol=1e-9)
    assert (single.get() is None) == (not rows)


def test_quantile_sketch_rank_error_within_one_percent() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(6, 0.8) for _ in range(60_000)]
    half = len(values) // 2
    a = QuantileSketch().update_many(values[:half])
    b = QuantileSketch().update_many(values[half:])
    merged = a.merge(b)
    assert merged.count == len(values)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        estimate = merged.get(q)
        assert estimate is not None
        true_rank = sum(v <= estimate for v in ordered) / len(ordered)
        assert abs(true_rank - q) <= 0.01, (q, true_rank)
    assert QuantileSketch.from_text(merged.to_text()).get(0.5) == merged.get(0.5)
    assert QuantileSketch().get(0.5) is None and QuantileSketch().quantiles() is None
    assert QuantileSketch().merge(a) == a and a.merge(QuantileSketch()) == a


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=50), st.text(max_size=40))
def test_novelty_is_the_minimum_normalized_distance(history: list[str], output: str) -> None:
    recent = RecentOutputs(k=8)
    for h in history:
        recent = recent.update(h)
    assert recent.outputs == tuple(history[-8:])
    value = novelty(output, recent)
    if not history:
        assert value is None
        return
    expected = min(
        Levenshtein.distance(output, h) / max(len(output), len(h)) if max(len(output), len(h)) else 0.0
        for h in history[-8:]
    )
    assert value == pytest.approx(expected)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 6),
    st.lists(st.text(max_size=90), max_size=6),
    st.lists(st.text(alphabet="ab cé😀", max_size=90) | st.text(max_size=20), max_size=12),
)
def test_novelty_many_equals_novelty_output_by_output(k: int, start: list[str], outputs: list[str]) -> None:
    """The batched form (one Numba call for a whole batch) gives exactly the sequential values and state."""
    initial = RecentOutputs(k, tuple(start[-k:]))
    values, final = novelty_many(outputs, initial)
    state, expected = initial, []
    for output in outputs:
        expected.append(novelty(output, state))
        state = state.update(output)
    assert values == expected and final == state
    # and against rapidfuzz, independently of novelty()
    pool = [*initial.outputs, *outputs]
    for p, value in zip(range(len(initial.outputs), len(pool)), values, strict=True):
        window = pool[max(0, p - k) : p]
        if not window:
            assert value is None
            continue
        longest = [max(len(pool[p]), len(h)) for h in window]
        oracle = min(Levenshtein.distance(pool[p], h) / n if n else 0.0 for h, n in zip(window, longest, strict=True))
        assert value == pytest.approx(oracle)


def test_recent_outputs_need_room_for_one() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        RecentOutputs(k=0)


def test_recent_outputs_merge_keeps_the_newest() -> None:
    a = RecentOutputs(k=3).update("a").update("b")
    b = RecentOutputs(k=3).update("c").update("d")
    assert a.merge(b).outputs == ("b", "c", "d")
    assert RecentOutputs().get() is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+news@example.co.uk today", {"email": 1}),
        ("call +1 (415) 555-0100 or 020 7946 0958", {"phone": 2}),
        ("card 4111 1111 1111 1111 and 5500-0000-0000-0004", {"credit_card": 2}),
        ("not a card: 4111 1111 1111 1112", {}),
        ("IBAN DE89 3704 0044 0532 0130 00, GB82WEST12345698765432", {"iban": 2}),
        ("bad IBAN DE00 3704 0044 0532 0130 00", {}),
        ("hosts 192.168.1.20 and 2001:db8::1", {"ip": 2}),
        ("not ip 999.1.1.1, not time 10:00:00", {}),
        ("ssn 123-45-6789 but not 000-12-3456", {"ssn": 1}),
        ("order 12345678 shipped 2026-11-25 for 1,234.56 USD", {}),
    ],
)
def test_pii_detection(text: str, expected: dict[str, int]) -> None:
    assert pii_counts(text) == expected


def test_redaction_removes_every_detected_value() -> None:
    text = "Mail jane@example.com, card 4111 1111 1111 1111, ssn 123-45-6789, ip 10.1.2.3."
    red = redact(text)
    assert red == "Mail [EMAIL], card [CARD], ssn [SSN], ip [IP]."
    assert pii_counts(red) == {}
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82")


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
    with pytest.raises(ValueError):
        window_key(datetime(2026, 11, 25), timedelta(0))


# --- refresh detection -------------------------------------------------------------------------------------------

WORDS_OR_SPACE = st.lists(
    st.sampled_from(["What", "is", "my", "balance", "?", "ÉTÉ", "ß", " ", "\t", "\n"]), max_size=12
)


@given(WORDS_OR_SPACE, st.sampled_from([str.upper, str.lower, str.title, lambda s: f"  {s}\n"]))
def test_refresh_key_ignores_whitespace_and_case(words: list[str], variant: Callable[[str], str]) -> None:
    text = " ".join(words)
    assert ask_key("s", "app", "route", variant(text)) == ask_key("s", "app", "route", text)
    assert normalize_input(variant(text)) == normalize_input(text)


@given(st.tuples(*[st.text(max_size=6)] * 4), st.tuples(*[st.text(max_size=6)] * 4))
def test_refresh_key_separates_sessions_apps_routes_and_inputs(x: tuple[str, ...], y: tuple[str, ...]) -> None:
    same = x[:3] == y[:3] and normalize_input(x[3]) == normalize_input(y[3])
    assert (ask_key(*x) == ask_key(*y)) == same  # length-prefixed: ("ab", "c") never collides with ("a", "bc")


def test_refresh_window_is_symmetric_and_inclusive() -> None:
    assert within_window(100.0, 700.0, 600) and within_window(700.0, 100.0, 600)
    assert not within_window(100.0, 700.5, 600)
    assert ask_key("s", "a", "r", "hi there") != ask_key("s", "a", "r", "hi  there!")
