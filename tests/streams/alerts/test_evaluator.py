"""The evaluator: windows complete only when every source partition has closed them, parts sent again replace the
first, the merged aggregates are exact, and the rules fire once per incident with the same ids after a replay."""

from __future__ import annotations

import copy
import math
from typing import Any

from metrics.alert_rules import parse_rules
from metrics.windows import WindowAggregate
from streams.alerts.evaluator import Evaluator

RULES = parse_rules("""
[[rules]]
name = "thumbs"
metric = "thumbs_up"
aggregation = "rate"
comparator = "<"
threshold = 0.45
resolve_threshold = 0.55
min_samples = 10
group_by = ["route"]

[[rules]]
name = "slow-3m"
metric = "latency_ms"
aggregation = "p95"
window = "3m"
comparator = ">"
threshold = 1000
for = 2

[[rules]]
name = "pii"
kind = "guardrail"
filters = { route = "answer" }

[[rules]]
name = "latency-drift"
kind = "drift"
metric = "latency_ms"
window = "2m"
reference = "4m"
every = "2m"
min_samples = 30
""")


def part(partition: int, start: int, route: str, metrics: dict[str, list[float]], partitions: int = 2) -> dict:
    return {"type": "window", "partition": partition, "partitions": partitions, "start": start, "end": start + 60,
            "labels": {"app": "chat", "route": route, "model": "m", "prompt_version": "v1", "index_version": None,
                       "component": None},
            "metrics": {name: WindowAggregate().update_many(vs).to_dict() for name, vs in metrics.items()}}  # fmt: skip


def closed(partition: int, until: int, partitions: int = 2) -> dict:
    return {"type": "closed", "partition": partition, "partitions": partitions, "until": until, "watermark": until + 5}


def thumbs(rate: float, n: int = 20) -> list[float]:
    ups = round(rate * n)
    return [1.0] * ups + [0.0] * (n - ups)


def feed(ev: Evaluator, messages: list[dict]) -> tuple[list, list]:
    windows, alerts = [], []
    for message in messages:
        out = ev.on_message(0, message)
        windows += out.windows
        alerts += out.alerts
    return windows, alerts


def test_a_window_completes_once_every_partition_closed_it_and_merges_exactly() -> None:
    ev = Evaluator({}, RULES, width_s=60)
    values_0, values_1 = [0.1, 1e16, -1e16, 3.0], [2.5, 7.25]
    windows, _ = feed(ev, [
        part(0, 0, "a", {"latency_ms": values_0}), part(1, 0, "a", {"latency_ms": values_1}), closed(0, 60),
    ])  # fmt: skip
    assert windows == []  # partition 1 has not closed it yet
    windows, _ = feed(ev, [closed(1, 60)])
    [window] = windows
    [row] = window.rows
    assert (row["count"], row["sum"], row["partitions"]) == (6, math.fsum(values_0 + values_1), 2)
    assert (row["min"], row["max"]) == (-1e16, 1e16)


def test_a_part_sent_again_replaces_the_first_and_a_stale_one_is_ignored() -> None:
    ev = Evaluator({}, RULES, width_s=60)
    windows, _ = feed(ev, [
        part(0, 0, "a", {"latency_ms": [1.0]}), part(0, 0, "a", {"latency_ms": [1.0]}),  # a worker's replay
        closed(0, 60, partitions=1), part(0, 0, "a", {"latency_ms": [5.0]}, partitions=1),
    ])  # fmt: skip
    assert [r["count"] for w in windows for r in w.rows] == [1]
    assert ev.stale_parts == 1


def test_a_route_whose_thumbs_fall_fires_once_and_resolves_the_others_stay_quiet() -> None:
    ev = Evaluator({}, RULES, width_s=60)
    alerts = []
    rates = {"a": [0.7, 0.7, 0.2, 0.25, 0.2, 0.5, 0.7, 0.7], "b": [0.7] * 8}  # 0.5: the band, no decision
    for minute in range(8):
        start = minute * 60
        alerts += feed(ev, [part(p, start, r, {"thumbs_up": thumbs(rates[r][minute])}) for r in rates for p in (0, 1)]
                       + [closed(0, start + 60), closed(1, start + 60)])[1]  # fmt: skip
    thumbs_alerts = [(a["state"], a["group"], a["window_start"], a["value"]) for a in alerts if a["rule"] == "thumbs"]
    assert thumbs_alerts == [
        ("firing", {"route": "a", "app": "chat"}, 120, 0.2),
        ("resolved", {"route": "a", "app": "chat"}, 360, 0.7),
    ]
    firing, resolved = (a for a in alerts if a["rule"] == "thumbs")
    assert firing["alert_id"] == resolved["alert_id"] and firing["samples"] == 40
    assert firing["detected_at"] == 185 and firing["windows"] == [120]


def test_a_rule_over_several_windows_merges_them_and_waits_for_its_for() -> None:
    ev = Evaluator({}, RULES, width_s=60)
    alerts = []
    for minute in range(6):
        start = minute * 60
        values = [2000.0] * 10 if minute in (3, 4) else [100.0] * 30
        alerts += feed(ev, [part(0, start, "a", {"latency_ms": values}, partitions=1),
                            closed(0, start + 60, partitions=1)])[1]  # fmt: skip
    slow = [(a["state"], a["window_start"], a["window_end"], a["windows"]) for a in alerts if a["rule"] == "slow-3m"]
    # p95 over [120, 300) with 10 slow of 40 breaches at 240 and 300 (for = 2): fires at the second
    assert slow == [("firing", 120, 300, [120, 180, 240])]


def test_a_guardrail_fires_on_the_first_occurrence_on_its_route_only() -> None:
    ev = Evaluator({}, RULES, width_s=60)
    _, alerts = feed(ev, [
        part(0, 0, "answer", {"pii_output": [0.0, 0.0, 1.0]}, partitions=1),
        part(0, 0, "search", {"pii_output": [2.0]}, partitions=1), closed(0, 60, partitions=1),
        part(0, 60, "answer", {"pii_output": [0.0]}, partitions=1), closed(0, 120, partitions=1),
    ])  # fmt: skip
    assert [(a["rule"], a["state"], a["group"]["route"]) for a in alerts] == [
        ("pii", "firing", "answer"), ("pii", "resolved", "answer")]  # fmt: skip


def test_a_drift_rule_compares_with_its_trailing_reference_on_its_schedule() -> None:
    ev = Evaluator({}, RULES, width_s=60)
    alerts = []
    for minute in range(10):
        start = minute * 60
        base = 100.0 if minute < 6 else 400.0
        values = [base + i for i in range(40)]
        alerts += feed(ev, [part(0, start, "a", {"latency_ms": values}, partitions=1),
                            closed(0, start + 60, partitions=1)])[1]  # fmt: skip
    drift = [(a["state"], a["window_end"]) for a in alerts if a["rule"] == "latency-drift"]
    assert drift == [("firing", 480)]  # every 2 min; [360, 480) against [120, 360)
    [fired] = [a for a in alerts if a["rule"] == "latency-drift"]
    assert fired["p_value"] < 0.01 and fired["value"] > 0.2


def test_replaying_the_same_messages_on_the_restored_state_gives_the_same_alerts() -> None:
    table: dict[str, Any] = {}
    ev = Evaluator(table, RULES, width_s=60)
    feed(ev, [part(0, 0, "a", {"thumbs_up": thumbs(0.7)}, partitions=1), closed(0, 60, partitions=1)])
    snapshot = copy.deepcopy(table)
    later = [part(0, 60, "a", {"thumbs_up": thumbs(0.1)}, partitions=1), closed(0, 120, partitions=1)]
    _, first = feed(ev, later)
    _, again = feed(Evaluator(snapshot, RULES, width_s=60), later)  # a crash before the state was saved
    assert first and [a["alert_id"] for a in first] == [a["alert_id"] for a in again]


def test_an_unknown_message_type_is_refused() -> None:
    ev = Evaluator({}, RULES, width_s=60)
    try:
        ev.on_message(0, {"type": "nope"})
    except ValueError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("accepted")


def test_an_empty_partition_holds_nothing_back_until_it_has_scores() -> None:
    ev = Evaluator({}, RULES, width_s=60)
    empty = {"type": "closed", "partition": 1, "partitions": 2, "until": None, "empty": True}
    windows, _ = feed(ev, [part(0, 0, "a", {"latency_ms": [1.0]}), empty, closed(0, 60)])
    assert [w.start for w in windows] == [0]  # partition 1 never had a score: not waited for
    windows, _ = feed(ev, [part(0, 60, "a", {"latency_ms": [1.0]}), closed(1, 60), closed(0, 120)])
    assert windows == []  # partition 1 has scores now (its mark is at 60): window [60, 120) waits for it
    windows, _ = feed(ev, [{**empty}, closed(1, 120)])  # a late empty marker never undoes its progress
    assert [w.start for w in windows] == [60]
