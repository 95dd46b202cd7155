"""The lifecycle of one alert rule for one group of labels: ok, pending, firing, and back; pure and replayable.

Each evaluation of a rule on a closed window gives an outcome (:func:`window_outcome`): True (breached), False
(clear: on the good side, past any hysteresis band) or None (no decision: too few values, or inside the band).
:func:`step` folds it into an :class:`AlertState` and says when an incident starts (``firing``) or ends
(``resolved``):

- ok --breach--> pending (or straight to firing when ``for`` is 1); pending --breach x ``for``--> firing;
  pending --clear--> ok; firing --clear x ``clear_for``--> resolved (back to ok); firing --breach--> firing.
- None keeps every counter as it is: an evaluation that cannot decide neither extends a streak nor breaks it, so a
  window short of ``min_samples`` between two breaches does not restart the ``for`` count.
- Cooldown: until ``cooldown`` after the last resolution a breach counts (pending) but cannot fire; the first
  breaching evaluation after it fires.
- The alert id hashes the rule's name and version, the group and the start of the window that fired it, so
  replaying the same evaluations after a crash gives the same ids, and one incident has one id.

Evaluations must be fed in window order; times are event time (epoch seconds), never the wall clock.

Example (``for = 2``, ``clear_for = 1``)::

    >>> from metrics.alert_rules import ThresholdRule
    >>> rule = ThresholdRule(name="slow", metric="latency_ms", comparator=">", threshold=800.0, for_=2)
    >>> group, state, seen = (("app", "chat"),), AlertState(), []
    >>> for start, outcome in [(0, True), (60, None), (120, True), (180, True), (240, False)]:
    ...     state, transition = step(rule, state, outcome, start, start + 60, group)
    ...     seen.append((state.state, transition and transition.state))
    >>> seen
    [('pending', None), ('pending', None), ('firing', 'firing'), ('firing', None), ('ok', 'resolved')]
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from metrics.alert_rules import DriftRule, GuardrailRule, Rule
from metrics.windows import WindowAggregate, sketch_drift

STATES = ("ok", "pending", "firing")
Group = tuple[tuple[str, str | None], ...]


class Transition(NamedTuple):
    alert_id: str
    state: str  # "firing" | "resolved"
    at: float  # epoch seconds: the end of the window that caused it


@dataclass(frozen=True, slots=True)
class AlertState:
    state: str = "ok"
    breaches: int = 0  # consecutive breaching evaluations
    clears: int = 0  # consecutive clear evaluations while firing
    alert_id: str | None = None  # the open incident's (firing only)
    fired_at: float | None = None  # the end of the window that fired it
    resolved_at: float | None = None  # the last resolution, for the cooldown

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "breaches": self.breaches,
            "clears": self.clears,
            "alert_id": self.alert_id,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertState:
        """The inverse of :meth:`to_dict`; a :class:`ValueError` naming the key for anything malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"alert state: must be a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__), key=str)
        if unknown:
            raise ValueError(f"alert state: unknown key(s) {unknown}")
        state = data.get("state", "ok")
        if state not in STATES:
            raise ValueError(f"alert state: state must be one of {', '.join(STATES)}, got {state!r}")
        counts = {}
        for key in ("breaches", "clears"):
            value = data.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"alert state: {key} must be an integer >= 0, got {value!r}")
            counts[key] = value
        times = {}
        for key in ("fired_at", "resolved_at"):
            value = data.get(key)
            ok = value is None or (
                isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            )
            if not ok:
                raise ValueError(f"alert state: {key} must be epoch seconds or None, got {value!r}")
            times[key] = None if value is None else float(value)
        alert_id = data.get("alert_id")
        if (state == "firing") != isinstance(alert_id, str) or (state == "firing") != (times["fired_at"] is not None):
            raise ValueError(f"alert state: a firing state (and only it) has an alert_id and fired_at, got {data!r}")
        return cls(state, counts["breaches"], counts["clears"], alert_id, times["fired_at"], times["resolved_at"])


def make_alert_id(rule: Rule, group: Group, window_start: float) -> str:
    """The id of the incident ``rule`` opens for ``group`` at the window starting at ``window_start``."""
    key = [rule.name, rule.version, [list(label) for label in group], repr(float(window_start))]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]


def window_outcome(rule: Rule, current: WindowAggregate, reference: WindowAggregate | None = None) -> bool | None:
    """What one evaluation says: True breach, False clear, None no decision (the ``outcome`` of :func:`step`).

    - threshold: None under ``min_samples`` values, else the window's aggregation against the rule (hysteresis:
      a value between ``threshold`` and ``resolve_threshold`` is None);
    - drift: :func:`metrics.windows.sketch_drift` of ``reference`` and ``current`` (None under ``min_samples`` on
      a side), True when drifted;
    - guardrail: None for an empty window, True when any value was > 0.

    >>> from metrics.alert_rules import ThresholdRule
    >>> rule = ThresholdRule(name="r", metric="m", comparator="<", threshold=0.4, resolve_threshold=0.5)
    >>> [window_outcome(rule, WindowAggregate().update_many([v])) for v in (0.3, 0.45, 0.6)]
    [True, None, False]
    """
    if isinstance(rule, DriftRule):
        if reference is None:
            raise ValueError(f"drift rule {rule.name!r} needs the reference period's aggregate")
        drift = sketch_drift(reference, current, rule.alpha, rule.threshold, rule.min_samples)
        return None if drift is None else drift.drifted
    if isinstance(rule, GuardrailRule):
        return rule.outcome(current.high, current.count)
    return rule.outcome(current.value(rule.aggregation), current.count)


def step(
    rule: Rule, state: AlertState, outcome: bool | None, window_start: float, window_end: float, group: Group
) -> tuple[AlertState, Transition | None]:
    """Fold one evaluation (of the window ``[window_start, window_end)``) into ``state``: the new state, and the
    transition it makes, if any."""
    if outcome is None:
        return state, None
    if outcome:
        if state.state == "firing":
            return replace(state, breaches=state.breaches + 1, clears=0), None
        breaches = state.breaches + 1
        cooling = state.resolved_at is not None and window_end < state.resolved_at + rule.cooldown_s
        if breaches < rule.for_ or cooling:
            return replace(state, state="pending", breaches=breaches, clears=0), None
        alert_id = make_alert_id(rule, group, window_start)
        fired = AlertState("firing", breaches, 0, alert_id, float(window_end), state.resolved_at)
        return fired, Transition(alert_id, "firing", float(window_end))
    if state.state != "firing":
        return replace(state, state="ok", breaches=0, clears=0), None
    if state.clears + 1 < rule.clear_for:
        return replace(state, breaches=0, clears=state.clears + 1), None
    assert state.alert_id is not None
    return AlertState(resolved_at=float(window_end)), Transition(state.alert_id, "resolved", float(window_end))
