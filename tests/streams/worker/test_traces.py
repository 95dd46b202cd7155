"""streams.worker.traces: which offset emits a span's scores, in both arrival orders, on release, and on replay."""

from __future__ import annotations

import json
from typing import Any

from streams.sdk.schema import SpanEvent, parse_event
from streams.worker.scoring import GenerationRef
from streams.worker.traces import MAX_PENDING, TraceJoin

REF = GenerationRef("g1", "bot", "answer", "m1", "v1", "out", "kb-1")


def span(sid: str, trace: str = "t", status: str = "ok") -> SpanEvent:
    event = parse_event(json.dumps({
        "type": "span", "event_id": sid, "ts": "2026-11-30T10:00:01Z", "session_id": "s", "app": "bot",
        "trace_id": trace, "span_id": sid, "component": "retriever", "name": "search", "status": status,
        "start": "2026-11-30T10:00:00Z", "end": "2026-11-30T10:00:00.5Z",
    }))  # fmt: skip
    assert isinstance(event, SpanEvent)
    return event


def ids(scores: list[Any]) -> list[tuple[str, str | None]]:
    return [(s.event_id, s.generation_id) for s in scores if s.metric == "span_duration_ms"]


def test_spans_before_their_generation_are_emitted_by_it_once_even_when_replayed() -> None:
    table: dict[str, Any] = {}
    traces = TraceJoin(table, ttl_s=60)
    assert traces.on_span(span("a"), 0, 10, 0.0) == []
    assert traces.on_span(span("b"), 0, 11, 0.0) == []
    assert ids(traces.on_generation(REF, "t", 0, 12, 1.0)) == [("a", "g1"), ("b", "g1")]
    assert ids(traces.on_span(span("c"), 0, 13, 1.0)) == [("c", "g1")]  # after it: at once
    # a crash: the batch 10..13 is processed again over the state it had written
    replay = TraceJoin(table, ttl_s=60)
    assert replay.on_span(span("a"), 0, 10, 2.0) == [] and replay.on_span(span("b"), 0, 11, 2.0) == []
    assert ids(replay.on_generation(REF, "t", 0, 12, 2.0)) == [("a", "g1"), ("b", "g1")]
    assert ids(replay.on_span(span("c"), 0, 13, 2.0)) == [("c", "g1")]
    # a second generation of the trace emits nothing again, and labels the spans after it
    later = GenerationRef("g2", "bot", "answer", "m2", "v1", "out")
    assert replay.on_generation(later, "t", 0, 14, 3.0) == []
    assert ids(replay.on_span(span("d"), 0, 15, 3.0)) == [("d", "g2")]


def test_spans_without_a_generation_are_released_once_and_again_only_by_a_replay_of_that_offset() -> None:
    table: dict[str, Any] = {}
    traces = TraceJoin(table, ttl_s=10)
    traces.on_span(span("a", "t"), 0, 5, 0.0)
    traces.on_span(span("x", "other"), 1, 5, 0.0)  # another partition: not this batch's business
    assert traces.expire_spans(0, 20, 30, now=5.0) == []  # not due yet
    released = traces.expire_spans(0, 20, 30, now=11.0)
    assert ids(released) == [("a", None)] and released[0].model is None and released[0].component == "retriever"
    assert traces.unjoined == 1
    assert traces.expire_spans(0, 31, 40, now=12.0) == []  # released once
    # spans of that trace after the release are scored at once, without labels; a late generation labels none
    assert ids(traces.on_span(span("b", "t"), 0, 41, 12.0)) == [("b", None)]
    assert traces.on_generation(REF, "t", 0, 42, 12.0) == []
    # after a restart, the batch that covers the release offset (30) emits the released spans again
    restarted = TraceJoin(table, ttl_s=10)
    assert restarted.expire_spans(0, 0, 19, now=13.0) == []
    assert ids(restarted.expire_spans(0, 25, 35, now=13.0)) == [("a", None)]
    assert restarted.expire_spans(0, 25, 35, now=13.0) == []
    # one more ttl later the entry is gone
    restarted.expire_spans(0, 50, 60, now=40.0)
    assert "t" not in table and "other" in table


def test_a_trace_with_too_many_waiting_spans_scores_the_rest_at_once() -> None:
    traces = TraceJoin({}, ttl_s=60)
    for i in range(MAX_PENDING):
        assert traces.on_span(span(f"s{i}"), 0, i, 0.0) == []
    assert ids(traces.on_span(span("over"), 0, MAX_PENDING, 0.0)) == [("over", None)]
    assert len(traces.on_generation(REF, "t", 0, MAX_PENDING + 1, 0.0)) == 2 * MAX_PENDING


def test_error_statuses() -> None:
    traces = TraceJoin({}, ttl_s=60)
    traces.on_generation(REF, "t", 0, 0, 0.0)
    for offset, (status, error) in enumerate(
        [("ok", 0.0), ("OK", 0.0), ("unset", 0.0), ("STATUS_CODE_OK", 0.0), ("success", 0.0), ("ERROR", 1.0),
         ("timeout", 1.0), ("cancelled", 1.0), ("failed", 1.0)], start=1,
    ):  # fmt: skip
        scores = traces.on_span(span(f"s{offset}", status=status), 0, offset, 0.0)
        assert [(s.metric, s.value) for s in scores] == [("span_duration_ms", 500.0), ("span_error", error)], status
