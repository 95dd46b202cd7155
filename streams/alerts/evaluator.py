"""The evaluator: merges each window's parts from the source partitions, then runs the alert rules over it.

It reads the metrics topic (:mod:`streams.worker.window_stage` writes it) one message at a time, per partition of
that topic, with its state in a table (a Faust table in the agent, restored after a restart):

- ``window`` messages are parts of a window (one source partition, one group); a part sent again replaces the
  first (``p|…`` keys), so a worker's replay after a crash never counts twice. A part of a window that has already
  been evaluated is ignored and counted (``stale_parts``).
- ``closed`` markers say up to when a source partition has closed its windows (or that it is empty: it never had
  a score, and holds nothing back). A window is complete once every source partition that is not empty has passed
  its end: its parts are merged per group and metric, written (``windows`` dataset,
  :mod:`sinks.alerting`) and handed to the rules, in window order.
- Each rule keeps, per group (``r|…`` keys), its lifecycle state (:mod:`metrics.alert_state`) and the recent
  windows it needs (a threshold rule's window, a drift rule's current and trailing reference periods). A changed
  rule has another version, hence a fresh state.

What comes out are alert records (firing / resolved); the agent (:mod:`streams.alerts.agent`) stores and delivers
them. Times are epoch seconds of event time; ``detected_at`` is the slowest source partition's watermark when the
window became complete, i.e. when the pipeline knew.

Example (a dict for the table; one source partition; a rule on the thumbs-up rate)::

    >>> from metrics.alert_rules import parse_rules
    >>> from metrics.windows import WindowAggregate
    >>> rules = parse_rules('''[[rules]]
    ... name = "thumbs"
    ... metric = "thumbs_up"
    ... comparator = "<"
    ... threshold = 0.4
    ... ''')
    >>> ev = Evaluator({}, rules, width_s=60)
    >>> part = {"type": "window", "partition": 0, "partitions": 1, "start": 0, "end": 60,
    ...         "labels": {"app": "chat", "route": "a"},
    ...         "metrics": {"thumbs_up": WindowAggregate().update_many([0.0, 0.0, 1.0]).to_dict()}}
    >>> ev.on_message(0, part).alerts
    []
    >>> out = ev.on_message(0, {"type": "closed", "partition": 0, "partitions": 1, "until": 60, "watermark": 190})
    >>> [(w.start, w.app, len(w.rows)) for w in out.windows], [(a["rule"], a["state"]) for a in out.alerts]
    ([(0, 'chat', 1)], [('thumbs', 'firing')])
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from metrics.alert_rules import DriftRule, GuardrailRule, Rule, RuleSet, ThresholdRule
from metrics.alert_state import AlertState, step, window_outcome
from metrics.windows import WindowAggregate, sketch_drift
from sinks.alerting import window_row

log = logging.getLogger("evalstream.alerts")

Labels = dict[str, Any]


@dataclass
class CompleteWindow:
    start: int
    end: int
    app: str
    rows: list[dict[str, Any]]  # ``windows`` rows


@dataclass
class Output:
    windows: list[CompleteWindow] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _merge_all(aggs: list[WindowAggregate]) -> WindowAggregate:
    out = WindowAggregate()
    for agg in aggs:
        out = out.merge(agg)
    return out


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Evaluator:
    """Merges windows and evaluates rules over them (see the module docstring)."""

    def __init__(self, table: MutableMapping[str, Any], rules: RuleSet, width_s: int) -> None:
        self.table = table
        self.rules = rules
        self.width = width_s
        self.stale_parts = 0
        self._pending: dict[int, dict[int, set[str]]] | None = None  # partition -> window start -> part keys

    def reset(self) -> None:
        """Forget the in-memory index (call on partition assignment; it is rebuilt from the table)."""
        self._pending = None

    def _index(self) -> dict[int, dict[int, set[str]]]:
        if self._pending is None:
            self._pending = {}
            for key, value in list(self.table.items()):
                if isinstance(key, str) and key.startswith("p|") and isinstance(value, dict):
                    self._pending.setdefault(value["q"], {}).setdefault(value["start"], set()).add(key)
        return self._pending

    def on_message(self, q: int, message: dict[str, Any]) -> Output:
        """One message of partition ``q`` of the metrics topic; what it completed and fired (ValueError, KeyError or
        TypeError for a message that is not one of ours)."""
        if not isinstance(message, dict):
            raise ValueError(f"a metrics message is a JSON object, got {type(message).__name__}")
        kind = message.get("type")
        if kind == "window":
            self._on_part(q, message)
            return Output()
        if kind == "closed":
            return self._on_closed(q, message)
        raise ValueError(f"unknown metrics message type {kind!r}")

    def _on_part(self, q: int, part: dict[str, Any]) -> None:
        start = int(part["start"])
        if start < self.table.get(f"d|{q}", -(2**62)):
            self.stale_parts += 1
            return
        key = f"p|{q}|{start}|{part['partition']}|{_key(part['labels'])}"
        self.table[key] = {"q": q, **part}
        self._index().setdefault(q, {}).setdefault(start, set()).add(key)

    def _on_closed(self, q: int, marker: dict[str, Any]) -> Output:
        state = self.table.get(f"c|{q}") or {"until": {}, "wm": {}}
        partition = str(marker["partition"])
        until, old = marker.get("until"), state["until"].get(partition)
        if until is not None:  # None: the partition is empty, it holds nothing back (until it has scores)
            until = max(int(until), old) if old is not None else int(until)
            state["wm"] = {
                **state["wm"],
                partition: max(marker.get("watermark") or until, state["wm"].get(partition, 0)),
            }
        elif old is not None:
            until = old  # an empty marker never undoes a partition's progress
        state = {"n": int(marker["partitions"]), "until": {**state["until"], partition: until}, "wm": state["wm"]}
        self.table[f"c|{q}"] = state
        marks = [u for u in state["until"].values() if u is not None]
        if len(state["until"]) < state["n"] or not marks:
            return Output()
        complete = min(marks)
        done = self.table.get(f"d|{q}", -(2**62))
        if complete <= done:
            return Output()
        detected_at = min(v for p, v in state["wm"].items() if state["until"].get(p) is not None)
        out = Output()
        pending = self._index().get(q, {})
        for start in sorted(s for s in pending if s + self.width <= complete):
            self._complete(q, start, pending.pop(start), detected_at, out)
        self.table[f"d|{q}"] = complete
        return out

    def _complete(self, q: int, start: int, keys: set[str], detected_at: float, out: Output) -> None:
        merged: dict[tuple[str, str], tuple[Labels, str, WindowAggregate, set[int]]] = {}
        end = start + self.width
        for key in sorted(keys):
            part = self.table.pop(key, None)
            if part is None:
                continue
            end = int(part["end"])
            for metric, data in part["metrics"].items():
                slot = (_key(part["labels"]), metric)
                labels, _, agg, sources = merged.get(slot, (part["labels"], metric, WindowAggregate(), set()))
                merged[slot] = (
                    labels,
                    metric,
                    agg.merge(WindowAggregate.from_dict(data)),
                    sources | {part["partition"]},
                )
        by_app: dict[str, list[dict[str, Any]]] = {}
        for labels, metric, agg, sources in merged.values():
            row = window_row(start, end - start, labels, metric, agg, len(sources))
            by_app.setdefault(labels.get("app") or "", []).append(row)
        out.windows += [CompleteWindow(start, end, app, rows) for app, rows in sorted(by_app.items())]
        values = [(labels, metric, agg) for labels, metric, agg, _ in merged.values()]
        for rule in self.rules.rules:
            out.alerts += self._evaluate(rule, start, end, values, detected_at)

    def _evaluate(
        self, rule: Rule, start: int, end: int, values: list[tuple[Labels, str, WindowAggregate]], detected_at: float
    ) -> list[dict[str, Any]]:
        groups: dict[tuple[tuple[str, Any], ...], WindowAggregate] = {}
        for labels, metric, agg in values:
            tagged = {**labels, "metric": metric}
            if rule.matches(tagged):
                group = rule.group_of(tagged)
                groups[group] = groups.get(group, WindowAggregate()).merge(agg)
        records = []
        for group, agg in sorted(groups.items(), key=lambda kv: _key(kv[0])):
            key = f"r|{rule.name}|{rule.version}|{_key(group)}"
            entry = self.table.get(key) or {"st": {}, "h": []}
            history = [(int(s), WindowAggregate.from_dict(d)) for s, d in entry["h"]] + [(start, agg)]
            reference = WindowAggregate.from_dict(entry["ref"]) if entry.get("ref") else WindowAggregate()
            outcome, value, samples, p_value, used, span = self._outcome(rule, history, reference, start, end)
            if isinstance(rule, DriftRule) and rule.reference_range is not None:
                low, high = rule.reference_range
                if low <= start and end <= high:
                    reference = reference.merge(agg)
            state = AlertState.from_dict(entry["st"]) if entry["st"] else AlertState()
            transition = None
            if outcome is not _SKIP:
                state, transition = step(rule, state, outcome, span[0], end, group)
            keep = [(s, a) for s, a in history if s >= end - self._span(rule)]
            self.table[key] = {
                "st": state.to_dict(), "h": [[s, a.to_dict()] for s, a in keep],
                **({"ref": reference.to_dict()} if reference.count else {}),
            }  # fmt: skip
            if transition is not None:
                records.append(self._record(rule, group, transition, value, samples, p_value, used, span, detected_at))
        return records

    def _span(self, rule: Rule) -> int:
        """How far back a rule needs windows: its window, plus a drift rule's trailing reference."""
        if isinstance(rule, DriftRule) and rule.reference_s is not None:
            return rule.window_s + rule.reference_s
        return rule.window_s

    def _outcome(
        self, rule: Rule, history: list[tuple[int, WindowAggregate]], reference: WindowAggregate, start: int, end: int
    ) -> tuple[Any, float | None, int, float | None, list[int], tuple[int, int]]:
        """(breached / clear / None / _SKIP, value, samples, p-value, windows used, the period evaluated)."""
        current = [(s, a) for s, a in history if end - rule.window_s <= s < end]
        merged = _merge_all([a for _, a in current])
        used = [s for s, _ in current]
        span = (end - rule.window_s, end)
        if isinstance(rule, GuardrailRule):
            latest = history[-1][1]
            return window_outcome(rule, latest), latest.high, latest.count, None, [start], (start, end)
        if isinstance(rule, ThresholdRule):
            value = merged.value(rule.aggregation)
            return window_outcome(rule, merged), value, merged.count, None, used, span
        if end % rule.every_s:
            return _SKIP, None, merged.count, None, used, span
        ref_start, ref_end = rule.reference_period(end - rule.window_s)
        if rule.reference_range is None:
            reference = _merge_all([a for s, a in history if ref_start <= s < ref_end])
        drift = sketch_drift(reference, merged, rule.alpha, rule.threshold, rule.min_samples)
        if drift is None:
            return None, None, merged.count, None, used, span
        return drift.drifted, drift.psi, merged.count, drift.p_value, used, span

    def _record(
        self, rule: Rule, group: tuple[tuple[str, Any], ...], transition: Any, value: float | None, samples: int,
        p_value: float | None, used: list[int], span: tuple[int, int], detected_at: float,
    ) -> dict[str, Any]:  # fmt: skip
        labels = dict(group)
        return {
            "alert_id": transition.alert_id, "state": transition.state, "rule": rule.name, "rule_version": rule.version,
            "kind": rule.kind, "severity": rule.severity, "description": rule.description, "app": labels.get("app"),
            "group": labels, "metric": ",".join(rule.metrics) if isinstance(rule, GuardrailRule) else rule.metric,
            "aggregation": rule.aggregation if isinstance(rule, ThresholdRule) else
            "psi" if isinstance(rule, DriftRule) else "max",
            "comparator": rule.comparator if isinstance(rule, ThresholdRule) else ">=" if isinstance(rule, DriftRule)
            else ">",
            "threshold": rule.threshold if isinstance(rule, ThresholdRule | DriftRule) else 0.0,
            "value": value, "samples": samples, "p_value": p_value, "window_start": span[0], "window_end": span[1],
            "changed_at": transition.at, "detected_at": max(detected_at, span[1]), "windows": used,
            "receivers": [r.name for r in self.rules.receivers_for(rule)],
        }  # fmt: skip


_SKIP = object()  # a drift rule off its schedule: not evaluated at this window
