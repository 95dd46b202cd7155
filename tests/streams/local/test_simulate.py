"""The simulator's traffic without Kafka: the same seed gives the same traffic at any start, the rates are what
docs/demo.md says, every event is valid and every malformed message is not, and each incident changes the traffic
in its own period only."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from metrics.pii import pii_counts
from streams.cli import app
from streams.local.simulate import (
    APP,
    CLASSES,
    DEFAULT_INCIDENTS,
    FAILING_CLASS,
    FAILING_ROUTE,
    GENERIC,
    PII_ROUTE,
    SWITCH_TO,
    SWITCHED,
    Incident,
    Malformed,
    parse_incident,
    run_simulation,
    simulate_events,
)
from streams.sdk.schema import EventValidationError, parse_event, validate_event

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TIME_FIELDS = ("ts", "start", "end")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def minutes(item: dict[str, Any]) -> float:
    return (when(item["ts"]) - START).total_seconds() / 60


def traffic(minutes_: float, seed: int = 1, rate: float = 5, incidents: Any = ()) -> list[Any]:
    return list(simulate_events(seed, rate, START, START + timedelta(minutes=minutes_), incidents))


def relative(item: Any, start: datetime) -> Any:
    """An item with its times as offsets from ``start``."""
    if isinstance(item, Malformed):
        return (item.key, len(item.value or b""), item.ts - start)  # the bytes hold the time too
    return {k: (when(v) - start if k in TIME_FIELDS and v else v) for k, v in item.items()}


def test_the_same_seed_gives_the_same_traffic_at_any_start_and_another_seed_other_traffic() -> None:
    first = traffic(20, seed=5, incidents=DEFAULT_INCIDENTS)
    assert first == traffic(20, seed=5, incidents=DEFAULT_INCIDENTS)
    later = START + timedelta(days=3, seconds=17)
    moved = list(simulate_events(5, 5, later, later + timedelta(minutes=20), DEFAULT_INCIDENTS))
    assert [relative(i, later) for i in moved] == [relative(i, START) for i in first]
    other = traffic(20, seed=6, incidents=DEFAULT_INCIDENTS)
    assert [i["event_id"] for i in other[:50] if isinstance(i, dict)] != [
        i["event_id"] for i in first[:50] if isinstance(i, dict)]  # fmt: skip


def test_events_come_in_time_order_valid_and_keyed_by_session_and_malformed_messages_are_invalid() -> None:
    items = traffic(30, incidents=DEFAULT_INCIDENTS)
    times = [i.ts if isinstance(i, Malformed) else when(i["ts"]) for i in items]
    assert times == sorted(times) and times[0] >= START and times[-1] < START + timedelta(minutes=30)
    events = [i for i in items if isinstance(i, dict)]
    for event in events:
        assert validate_event(event).app == APP
    assert len({e["event_id"] for e in events}) == len(events)
    malformed = [i for i in items if isinstance(i, Malformed)]
    for message in malformed:
        with pytest.raises(EventValidationError):
            parse_event(message.value)
    assert 0.003 <= len(malformed) / len(items) <= 0.008  # ~0.5%


def test_rates_a_b_split_and_follow_ups_are_as_documented() -> None:
    items = traffic(120)
    assert len(items) / 7200 == pytest.approx(5, rel=0.1)  # messages per second of event time
    assert len(traffic(30, rate=20)) / 1800 == pytest.approx(20, rel=0.1)
    events = [i for i in items if isinstance(i, dict)]
    generations = {e["generation_id"]: e for e in events if e["type"] == "generation"}
    by_type = Counter(e["type"] for e in events)
    n = len(generations)
    per_trace = Counter((e["trace_id"], e["component"]) for e in events if e["type"] == "span")
    assert all(per_trace[(g["trace_id"], c)] == 1 for g in generations.values() for c in ("retriever", "llm"))
    assert by_type["feedback"] / n == pytest.approx(0.6, abs=0.03)
    assert by_type["edit"] / n == pytest.approx(0.2, abs=0.03)
    assert by_type["regenerate"] / n == pytest.approx(0.05, abs=0.02)
    thumbs: dict[str, list[bool]] = defaultdict(list)
    sessions: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for e in events:
        if e["type"] == "feedback":
            thumbs[generations[e["generation_id"]]["prompt_version"]].append(e["thumbs"] == "up")
        if e["type"] == "generation":
            sessions[e["session_id"]].add((e["model"], e["prompt_version"]))
    assert statistics.mean(thumbs["v1"]) == pytest.approx(0.60, abs=0.04)
    assert statistics.mean(thumbs["v2"]) == pytest.approx(0.72, abs=0.04)
    assert all(len(arms) == 1 for arms in sessions.values())  # the A/B split is by session
    assert Counter(m for arms in sessions.values() for m, _ in arms).keys() == {"gpt-4o-mini", "claude-3-5-haiku"}
    assert statistics.mean(len(t) for t in _turns(events).values()) == pytest.approx(4, abs=0.5)
    asked_again = [t for turns in _turns(events).values() for t, u in itertools.pairwise(turns) if t == u]
    assert 0.01 <= len(asked_again) / n <= 0.05  # refreshes
    with_pii = [g for g in generations.values() if pii_counts(g["input"])]
    assert 0.03 <= len(with_pii) / n <= 0.08
    assert all(not pii_counts(g["output"]) for g in generations.values())  # no leak without the incident
    failed = {e["trace_id"] for e in events if e["type"] == "span" and e["status"] == "error"}
    assert all(g.get("context") for g in generations.values() if g["trace_id"] not in failed)
    assert not any(g.get("context") for g in generations.values() if g["trace_id"] in failed)


def _turns(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    turns: dict[str, list[str]] = defaultdict(list)
    for e in events:
        if e["type"] == "generation":
            turns[e["session_id"]].append(e["input"])
    return turns


def test_each_incident_changes_the_traffic_in_its_period_only() -> None:
    story = ("failing-class@5m+10m", "model-switch@10m+10m", "pii-leak@20m+5m", "slow-retriever@30m+5m")
    schedule = [parse_incident(t) for t in story]
    events = [i for i in traffic(40, seed=2, incidents=schedule) if isinstance(i, dict)]
    calm = [i for i in traffic(40, seed=2) if isinstance(i, dict)]
    generations = {e["generation_id"]: e for e in events if e["type"] == "generation"}

    def inside(e: dict[str, Any], start: float, end: float) -> bool:
        return start <= minutes(e) < end

    # model-switch: llama-3.1-8b instead of claude-3-5-haiku, slower and with other words, in [10, 20) only
    switched = [g for g in generations.values() if g["model"] == SWITCH_TO]
    assert switched and all(inside(g, 10, 20.1) for g in switched)
    assert not any(g["model"] == SWITCHED and inside(g, 10.1, 20) for g in generations.values())
    latency = {m: statistics.median(g["latency_ms"] for g in generations.values() if g["model"] == m)
               for m in (SWITCHED, SWITCH_TO)}  # fmt: skip
    assert latency[SWITCH_TO] > 2 * latency[SWITCHED]
    vague = [g for g in generations.values() if any(half in g["output"] for half in GENERIC[0])]
    assert {g["generation_id"] for g in vague} == {g["generation_id"] for g in switched if g["output"]}

    # failing-class: refund questions get thumbs down and regenerates in [5, 15), as usual elsewhere
    def refund_outcomes(start: float, end: float) -> tuple[float, float]:
        refunds = {
            gid for gid, g in generations.items() if _class(g["input"]) == FAILING_CLASS and inside(g, start, end)
        }
        ups = [e["thumbs"] == "up" for e in events if e["type"] == "feedback" and e["generation_id"] in refunds]
        redone = sum(e["type"] == "regenerate" and e["generation_id"] in refunds for e in events)
        return statistics.mean(ups), redone / len(refunds)

    during, before, after = refund_outcomes(5, 15), refund_outcomes(0, 5), refund_outcomes(16, 40)
    assert during[0] < 0.2 and during[1] > 0.25
    assert before[0] > 0.5 and after[0] > 0.5 and before[1] < 0.15 and after[1] < 0.15
    assert all(g["route"] == FAILING_ROUTE for g in generations.values() if _class(g["input"]) == FAILING_CLASS)

    # pii-leak: e-mail addresses and phone numbers in answers on compose, in [20, 25) only
    leaked = [g for g in generations.values() if pii_counts(g["output"])]
    assert leaked and all(inside(g, 20, 25.1) and g["route"] == PII_ROUTE for g in leaked)
    compose = [g for g in generations.values() if g["route"] == PII_ROUTE and inside(g, 20.1, 25) and g["output"]]
    assert len(leaked) / len(compose) > 0.3

    # slow-retriever: ten times slower, a fifth erroring, in [30, 35) only
    def retriever(start: float, end: float) -> tuple[float, float]:
        spans = [e for e in events if e["type"] == "span" and e["component"] == "retriever" and inside(e, start, end)]
        durations = [(when(s["end"]) - when(s["start"])).total_seconds() * 1000 for s in spans]
        return statistics.median(durations), sum(s["status"] == "error" for s in spans) / len(spans)

    (slow, slow_errors), (usual, usual_errors) = retriever(30.1, 35), retriever(0, 30)
    assert slow > 5 * usual and slow_errors > 0.1 and usual_errors < 0.02
    assert retriever(35.1, 40)[0] < 2 * usual

    # before the first incident, the traffic is the same as without any
    assert [e for e in events if minutes(e) < 5] == [e for e in calm if minutes(e) < 5]


def _class(question: str) -> str:
    return FAILING_CLASS if "refund" in question or "money back" in question else "other"


def test_incidents_parse_and_bad_ones_are_refused_before_anything_is_sent() -> None:
    assert parse_incident("model-switch@0") == Incident("model-switch", 0, None)
    assert parse_incident("slow-retriever@90s+1h") == Incident("slow-retriever", 90, 3600)
    assert [str(parse_incident(t)) for t in ("pii-leak@16m+5m", "model-switch@90s")] == [
        "pii-leak@16m+5m", "model-switch@90s"]  # fmt: skip
    for bad, why in [("meteor@5m", "KIND one of"), ("pii-leak", "KIND@START"), ("pii-leak@soon", "invalid duration"),
                     ("pii-leak@5m+0", "must be positive")]:  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_incident(bad)
    result = CliRunner().invoke(app, ["simulate", "--incident", "meteor@5m"])
    assert result.exit_code == 2 and "KIND one of model-switch" in result.stderr
    assert {CLASSES[FAILING_CLASS][0], PII_ROUTE} <= {route for route, *_ in CLASSES.values()}


def test_history_goes_at_full_speed_then_live_traffic_as_its_time_comes() -> None:
    sent: list[tuple[float, Any]] = []
    backfilled: list[float] = []
    began = time.monotonic()
    progress = run_simulation(lambda item: sent.append((time.time(), item)), seed=3, rate=20, backfill_s=600,
                              duration_s=3, on_backfilled=lambda p: backfilled.append(time.monotonic()))  # fmt: skip
    assert progress.start is not None and progress.backfilled
    now = progress.start + timedelta(seconds=600)
    history = [item for _, item in sent if (item.ts if isinstance(item, Malformed) else when(item["ts"])) < now]
    assert len(history) / 600 == pytest.approx(20, rel=0.25) and backfilled[0] - began < 2  # ~12,000: at once
    live = [(at, item) for at, item in sent[len(history) :]]
    assert live and progress.events + progress.malformed == len(sent)
    for at, item in live:  # sent when its time came, not before
        ts = item.ts if isinstance(item, Malformed) else when(item["ts"])
        assert ts.timestamp() <= at + 0.05
    assert 2.5 <= time.monotonic() - backfilled[0] <= 4.5


def test_stop_ends_live_traffic() -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    began = time.monotonic()
    run_simulation(lambda item: None, seed=1, rate=5, stop=stop)
    assert time.monotonic() - began < 2
