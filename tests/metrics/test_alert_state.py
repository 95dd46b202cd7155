"""The alert lifecycle: pending, firing, resolved; hysteresis, cooldown, one id per incident, replayable."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.alert_rules import DriftRule, GuardrailRule, Rule, ThresholdRule
from metrics.alert_state import AlertState, Group, Transition, make_alert_id, step, window_outcome
from metrics.windows import WindowAggregate

W = 60  # the base window
CHAT: Group = (("app", "chat"), ("route", "answer"))
B, C, N = True, False, None  # breach, clear, no decision


def threshold_rule(**fields: Any) -> ThresholdRule:
    params: dict[str, Any] = {"name": "slow", "metric": "latency_ms", "comparator": ">", "threshold": 800.0}
    return ThresholdRule(**(params | fields))


def run(
    rule: Rule, outcomes: list[bool | None], group: Group = CHAT, state: AlertState | None = None, first: int = 0
) -> tuple[AlertState, list[tuple[int, Transition]], list[str]]:
    """Feed one outcome per window (window i is [i*W, (i+1)*W)): the final state, the transitions with their window
    index, and the state after each step."""
    state = state or AlertState()
    transitions, states = [], []
    for i, outcome in enumerate(outcomes, start=first):
        state, transition = step(rule, state, outcome, i * W, (i + 1) * W, group)
        states.append(state.state)
        if transition is not None:
            transitions.append((i, transition))
    return state, transitions, states


def kinds(transitions: list[tuple[int, Transition]]) -> list[tuple[int, str]]:
    return [(i, t.state) for i, t in transitions]


def test_for_1_fires_on_the_first_breach_and_resolves_on_the_first_clear() -> None:
    rule = threshold_rule()
    state, transitions, states = run(rule, [C, B, B, C, C])
    assert states == ["ok", "firing", "firing", "ok", "ok"]
    assert kinds(transitions) == [(1, "firing"), (3, "resolved")]
    (_, fired), (_, resolved) = transitions
    assert fired == Transition(make_alert_id(rule, CHAT, 1 * W), "firing", 2 * W)
    assert resolved == Transition(fired.alert_id, "resolved", 4 * W)
    assert state == AlertState(resolved_at=4 * W)


def test_for_2_waits_in_pending() -> None:
    _, transitions, states = run(threshold_rule(for_=2), [B, B, B])
    assert states == ["pending", "firing", "firing"]
    assert kinds(transitions) == [(1, "firing")]


def test_for_3_needs_three_breaches_in_a_row_and_a_clear_restarts_the_count() -> None:
    state, transitions, states = run(threshold_rule(for_=3), [B, B, C, B, B, B])
    assert states == ["pending", "pending", "ok", "pending", "pending", "firing"]
    assert kinds(transitions) == [(5, "firing")]
    assert (state.breaches, state.clears, state.fired_at) == (3, 0, 6 * W)


def test_pending_goes_back_to_ok_on_a_clear_without_a_transition() -> None:
    state, transitions, states = run(threshold_rule(for_=2), [B, C])
    assert states == ["pending", "ok"] and transitions == [] and state == AlertState()


def test_clear_for_needs_consecutive_clears_and_a_breach_restarts_them() -> None:
    _, transitions, states = run(threshold_rule(clear_for=3), [B, C, C, B, C, C, C])
    assert states == ["firing"] * 6 + ["ok"]
    assert kinds(transitions) == [(0, "firing"), (6, "resolved")]


def test_no_decision_keeps_the_counters() -> None:
    """None neither extends nor breaks a streak: B N B fires a for=2 rule; C N C resolves a clear_for=2 one."""
    rule = threshold_rule(for_=2, clear_for=2)
    state, transitions, states = run(rule, [B, N, B, N, C, N, N, C])
    assert states == ["pending", "pending", "firing", "firing", "firing", "firing", "firing", "ok"]
    assert kinds(transitions) == [(2, "firing"), (7, "resolved")]
    for s in (AlertState(), AlertState("pending", 1), AlertState("firing", 2, 1, "id", 60.0, None)):
        assert step(rule, s, N, 0, 60, CHAT) == (s, None)
    assert state.resolved_at == 8 * W


def test_hysteresis_through_window_outcome() -> None:
    """Fires under 0.4, stays firing while the value sits in [0.4, 0.5), resolves at 0.5 or more."""
    rule = threshold_rule(name="thumbs", metric="thumbs_up", comparator="<", threshold=0.4, resolve_threshold=0.5)
    values = [0.6, 0.3, 0.45, 0.42, 0.49, 0.55, 0.45, 0.35]
    outcomes = [window_outcome(rule, WindowAggregate().update_many([v])) for v in values]
    assert outcomes == [C, B, N, N, N, C, N, B]
    _, transitions, states = run(rule, outcomes)
    assert states == ["ok", "firing", "firing", "firing", "firing", "ok", "ok", "firing"]
    assert kinds(transitions) == [(1, "firing"), (5, "resolved"), (7, "firing")]


def test_window_outcome_needs_min_samples() -> None:
    rule = threshold_rule(min_samples=3, aggregation="p95")
    few, enough = WindowAggregate().update_many([900.0] * 2), WindowAggregate().update_many([900.0] * 3)
    assert (window_outcome(rule, few), window_outcome(rule, enough), window_outcome(rule, WindowAggregate())) == (
        None,
        True,
        None,
    )
    assert window_outcome(threshold_rule(aggregation="count", comparator="<", threshold=5.0), enough) is True


def test_window_outcome_for_guardrail_and_drift_rules() -> None:
    guard = GuardrailRule(name="pii")
    assert window_outcome(guard, WindowAggregate().update_many([0.0, 2.0])) is True
    assert window_outcome(guard, WindowAggregate().update_many([0.0, 0.0])) is False
    assert window_outcome(guard, WindowAggregate().add_late()) is None
    rule = DriftRule(name="d", metric="latency_ms", reference_s=3600, min_samples=30)
    ref = WindowAggregate().update_many(float(i) for i in range(100))
    assert window_outcome(rule, WindowAggregate().update_many(float(i) for i in range(100)), ref) is False
    assert window_outcome(rule, WindowAggregate().update_many(float(i) for i in range(60, 160)), ref) is True
    assert window_outcome(rule, WindowAggregate().update_many([1.0] * 29), ref) is None
    with pytest.raises(ValueError, match="needs the reference"):
        window_outcome(rule, ref)


def test_cooldown_holds_a_breach_in_pending_until_it_is_over() -> None:
    rule = threshold_rule(cooldown_s=3 * W)
    # resolved at the end of window 1 (t = 120): no firing while window_end < 300, i.e. windows 2 and 3
    _, transitions, states = run(rule, [B, C, B, B, B, B])
    assert states == ["firing", "ok", "pending", "pending", "firing", "firing"]
    assert kinds(transitions) == [(0, "firing"), (1, "resolved"), (4, "firing")]
    assert transitions[0][1].alert_id != transitions[2][1].alert_id


def test_cooldown_fires_at_the_first_breach_after_it_not_when_it_ends() -> None:
    rule = threshold_rule(cooldown_s=4 * W, for_=2)
    # resolved at t = 180 (window 2), so windows 3-5 (ending 240-360) are in the cooldown and window 6 is not
    _, transitions, states = run(rule, [B, B, C, B, B, B, N, C, B, B])
    assert states[3:] == ["pending", "pending", "pending", "pending", "ok", "pending", "firing"]
    assert kinds(transitions) == [(1, "firing"), (2, "resolved"), (9, "firing")]
    _, transitions, _ = run(rule, [B, B, C, B, B, B, N, B])
    assert kinds(transitions)[-1] == (7, "firing")  # the breach streak survived the cooldown
    _, transitions, _ = run(rule, [B, B, C, B, B, B, B])
    assert kinds(transitions)[-1] == (6, "firing")  # the first breach whose window ends at resolved + cooldown


def test_no_cooldown_refires_at_once() -> None:
    _, transitions, _ = run(threshold_rule(), [B, C, B])
    assert kinds(transitions) == [(0, "firing"), (1, "resolved"), (2, "firing")]


@pytest.mark.parametrize(
    ("for_", "clear_for", "expected"),
    [(1, 2, [(0, "firing")]), (2, 1, []), (1, 1, [(i, "firing" if i % 2 == 0 else "resolved") for i in range(20)])],
)
def test_flapping_input(for_: int, clear_for: int, expected: list[tuple[int, str]]) -> None:
    """Alternating breach and clear: with clear_for 2 one incident stays open; with for 2 nothing ever fires."""
    _, transitions, _ = run(threshold_rule(for_=for_, clear_for=clear_for), [B, C] * 10)
    assert kinds(transitions) == expected
    firing_ids = [t.alert_id for _, t in transitions if t.state == "firing"]
    assert len(firing_ids) == len(set(firing_ids))


def test_alert_ids_are_deterministic_and_depend_on_rule_group_and_window() -> None:
    rule = threshold_rule(for_=2)
    first = run(rule, [B, B, C, B, B, C])[1]
    assert run(rule, [B, B, C, B, B, C])[1] == first
    ids = [t.alert_id for _, t in first if t.state == "firing"]
    assert ids == [make_alert_id(rule, CHAT, 1 * W), make_alert_id(rule, CHAT, 4 * W)] and ids[0] != ids[1]
    assert all(len(i) == 20 and int(i, 16) >= 0 for i in ids)
    other_group = run(rule, [B, B], group=(("app", "chat"), ("route", None)))[1]
    other_version = run(replace(rule, threshold=900.0), [B, B])[1]
    same_version = run(replace(rule, description="new words"), [B, B])[1]
    assert len({first[0][1].alert_id, other_group[0][1].alert_id, other_version[0][1].alert_id}) == 3
    assert same_version[0][1].alert_id == first[0][1].alert_id
    assert make_alert_id(rule, CHAT, 60) == make_alert_id(rule, CHAT, 60.0)


def test_a_replay_after_a_crash_gives_the_same_transitions() -> None:
    rule = threshold_rule(for_=2, clear_for=2, cooldown_s=W)
    outcomes = [B, N, B, C, B, C, C, B, B, B, C, N, C]
    _, whole, _ = run(rule, outcomes)
    for cut in range(len(outcomes) + 1):
        saved, before, _ = run(rule, outcomes[:cut])
        restored = AlertState.from_dict(json.loads(json.dumps(saved.to_dict())))
        assert restored == saved
        _, after, _ = run(rule, outcomes[cut:], state=restored, first=cut)
        assert before + after == whole
    # the worker crashed after emitting but before saving: the replayed evaluations emit the same ids again
    saved, before, _ = run(rule, outcomes[:2])
    _, again, _ = run(rule, outcomes[2:5], state=saved, first=2)
    _, replayed, _ = run(rule, outcomes[2:5], state=saved, first=2)
    assert again == replayed and again


def test_state_dict_round_trip_and_malformed_dicts() -> None:
    for s in (AlertState(), AlertState("pending", 2), AlertState("firing", 3, 1, "abc", 120.0, 60.0)):
        assert AlertState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert AlertState.from_dict({}) == AlertState()
    assert AlertState.from_dict({"state": "ok", "resolved_at": 60}) == AlertState(resolved_at=60.0)
    bad: list[tuple[Any, str]] = [
        ([], "must be a dict"),
        ({"state": "ok", "extra": 1}, "unknown key"),
        ({"state": "resolved"}, "state must be one of ok, pending, firing"),
        ({"breaches": -1}, "breaches must be an integer >= 0"),
        ({"clears": True}, "clears must be an integer >= 0"),
        ({"fired_at": "noon"}, "fired_at must be epoch seconds or None"),
        ({"resolved_at": float("nan")}, "resolved_at must be epoch seconds or None"),
        ({"state": "firing", "fired_at": 60.0}, "a firing state (and only it) has an alert_id and fired_at"),
        ({"state": "firing", "alert_id": "x"}, "a firing state (and only it)"),
        ({"state": "ok", "alert_id": "x"}, "a firing state (and only it)"),
        ({"state": "pending", "fired_at": 5.0}, "a firing state (and only it)"),
    ]
    for data, message in bad:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            AlertState.from_dict(data)


def streak_model(rule: ThresholdRule, outcomes: list[bool | None]) -> list[tuple[int, str]]:
    """An independent statement of the rules: fire when the last ``for`` decisions were breaches and the cooldown
    is over; resolve when the last ``clear_for`` decisions while firing were clears."""
    transitions: list[tuple[int, str]] = []
    firing, resolved_at, breaches, clears = False, None, 0, 0
    for i, outcome in enumerate(outcomes):
        if outcome is None:
            continue
        breaches, clears = (breaches + 1, 0) if outcome else (0, clears + 1 if firing else 0)
        cooling = resolved_at is not None and (i + 1) * W < resolved_at + rule.cooldown_s
        if not firing and breaches >= rule.for_ and not cooling:
            firing, clears = True, 0
            transitions.append((i, "firing"))
        elif firing and clears >= rule.clear_for:
            firing, resolved_at, breaches, clears = False, (i + 1) * W, 0, 0
            transitions.append((i, "resolved"))
    return transitions


GROUPS: list[Group] = [(("app", "a"),), (("app", "b"),), (("app", "a"), ("route", "x"))]


@settings(deadline=None, max_examples=300)
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 4),
    st.lists(st.tuples(st.integers(0, len(GROUPS) - 1), st.sampled_from([B, C, N])), max_size=80),
)
def test_transitions_alternate_and_each_incident_has_one_fresh_id(
    for_: int, clear_for: int, cooldown_windows: int, feed: list[tuple[int, bool | None]]
) -> None:
    rule = threshold_rule(for_=for_, clear_for=clear_for, cooldown_s=cooldown_windows * W)
    states = {i: AlertState() for i in range(len(GROUPS))}
    per_group: dict[int, list[tuple[int, Transition]]] = {i: [] for i in range(len(GROUPS))}
    outcomes: dict[int, list[bool | None]] = {i: [] for i in range(len(GROUPS))}
    for g, outcome in feed:  # interleaved groups; each group's own windows follow one another
        i = len(outcomes[g])
        outcomes[g].append(outcome)
        states[g], transition = step(rule, states[g], outcome, i * W, (i + 1) * W, GROUPS[g])
        if transition is not None:
            assert transition.at == (i + 1) * W  # event time: the end of the window that caused it
            per_group[g].append((i, transition))
    seen: set[str] = set()
    for g, transitions in per_group.items():
        assert [t.state for _, t in transitions] == ["firing", "resolved"] * (len(transitions) // 2) + (
            ["firing"] if len(transitions) % 2 else []
        )
        for k, (_, t) in enumerate(transitions):
            if t.state == "firing":
                assert t.alert_id not in seen
                seen.add(t.alert_id)
            else:
                assert t.alert_id == transitions[k - 1][1].alert_id
        assert kinds(transitions) == streak_model(rule, outcomes[g])
        assert (states[g].state == "firing") == (len(transitions) % 2 == 1)
        if states[g].state == "firing":
            assert states[g].alert_id == transitions[-1][1].alert_id
