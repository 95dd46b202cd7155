"""Span scores against a real Kafka broker: a trace's spans carry its generation's labels whichever arrives first,
and spans whose generation never comes are scored with their own labels once the join's time is up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sinks.catalog import connect, landed_counts, query
from streams.local.launch import spawn_cli, stop, wait_for
from streams.sdk.publisher import Publisher
from streams.settings import Settings

pytestmark = pytest.mark.integration


def generation(session: str, gid: str, trace: str, ts: str, **extra: Any) -> dict[str, Any]:
    return {"type": "generation", "event_id": f"e-{gid}", "ts": ts, "session_id": session, "app": "rag-bot",
            "generation_id": gid, "route": "answer", "model": "m1", "prompt_version": "v2", "input": "q",
            "output": "a", "trace_id": trace, **extra}  # fmt: skip


def span(session: str, sid: str, trace: str, component: str, start: str, end: str, status: str = "ok") -> dict:
    return {"type": "span", "event_id": f"e-{sid}", "ts": end, "session_id": session, "app": "rag-bot",
            "trace_id": trace, "span_id": sid, "component": component, "name": f"{component}-call",
            "start": start, "end": end, "status": status}  # fmt: skip


def span_scores(data: Path) -> dict[str, dict[str, Any]]:
    con = connect(data)
    columns, rows = query(
        con,
        """SELECT event_id, generation_id, app, route, model, prompt_version, index_version, component,
                  max(value) FILTER (WHERE metric = 'span_duration_ms') AS duration,
                  max(value) FILTER (WHERE metric = 'span_error') AS error, count(*) AS n
           FROM scores WHERE metric LIKE 'span_%' GROUP BY ALL""",
    )
    return {r[0]: dict(zip(columns, r, strict=True)) for r in rows}


def test_spans_carry_their_generations_labels_in_both_orders(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"join_ttl_s": 4.0, "embed_backend": "off"})
    first = [
        # generation first, then its spans
        generation("s1", "g1", "t1", "2026-11-30T10:00:01Z", index_version="kb-7", tags={"region": "eu"}),
        span("s1", "a", "t1", "retriever", "2026-11-30T10:00:00Z", "2026-11-30T10:00:00.120Z"),
        span("s1", "b", "t1", "llm", "2026-11-30T10:00:00.120Z", "2026-11-30T10:00:00.920Z", "ERROR"),
        # spans first (as tracers often send them), then the generation
        span("s2", "c", "t2", "retriever", "2026-11-30T10:01:00Z", "2026-11-30T10:01:00.300Z"),
        span("s2", "d", "t2", "reranker", "2026-11-30T10:01:00.300Z", "2026-11-30T10:01:00.350Z", "timeout"),
        generation("s2", "g2", "t2", "2026-11-30T10:01:01Z", index_version="kb-8"),
        # a trace whose generation never comes
        span("s3", "e", "t3", "retriever", "2026-11-30T10:02:00Z", "2026-11-30T10:02:02Z"),
    ]
    worker = spawn_cli(["worker"], settings.to_env(), tmp_path / "worker.log")
    try:
        with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
            pub.publish_many(first)
        wait_for(lambda: landed_counts(settings.data_dir) == (len(first), 0) or None, 180, what="the worker",
                 alive=worker)  # fmt: skip
        got = span_scores(settings.data_dir)
        assert set(got) == {"e-a", "e-b", "e-c", "e-d"}  # e waits for its generation
        time.sleep(settings.join_ttl_s + 1)
        # the next batch on s3's partition finds t3's time up, and scores e without a generation
        tick = {"type": "regenerate", "event_id": "e-tick", "ts": "2026-11-30T10:03:00Z", "session_id": "s3",
                "app": "rag-bot", "generation_id": "unknown"}  # fmt: skip
        with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
            pub.publish_many([tick])
        wait_for(lambda: "e-e" in span_scores(settings.data_dir) or None, 120, what="span e's scores", alive=worker)
    finally:
        stop(worker)
    got = span_scores(settings.data_dir)
    labelled = {"app": "rag-bot", "route": "answer", "model": "m1", "prompt_version": "v2"}
    assert got["e-a"] == {**labelled, "event_id": "e-a", "generation_id": "g1", "index_version": "kb-7",
                          "component": "retriever", "duration": pytest.approx(120.0), "error": 0.0, "n": 2}  # fmt: skip
    assert got["e-b"]["generation_id"] == "g1" and got["e-b"]["component"] == "llm"
    assert got["e-b"]["duration"] == pytest.approx(800.0) and got["e-b"]["error"] == 1.0
    for sid, component, ms, error in (("e-c", "retriever", 300.0, 0.0), ("e-d", "reranker", 50.0, 1.0)):
        assert got[sid] == {**labelled, "event_id": sid, "generation_id": "g2", "index_version": "kb-8",
                            "component": component, "duration": pytest.approx(ms), "error": error, "n": 2}  # fmt: skip
    assert got["e-e"] == {"event_id": "e-e", "generation_id": None, "app": "rag-bot", "route": None, "model": None,
                          "prompt_version": None, "index_version": None, "component": "retriever",
                          "duration": pytest.approx(2000.0), "error": 0.0, "n": 2}  # fmt: skip
    con = connect(settings.data_dir)
    # the generation's own scores and embeddings rows carry the index version; the event keeps its tags
    assert query(con, "SELECT DISTINCT index_version FROM scores WHERE generation_id = 'g1' AND component IS NULL")[
        1] == [("kb-7",)]  # fmt: skip
    assert query(con, "SELECT tags['region'] FROM events WHERE generation_id = 'g1' AND type = 'generation'")[1] == [
        ("eu",)]  # fmt: skip
    log = (tmp_path / "worker.log").read_text()
    assert '"spans_unjoined": 1' in log or "'spans_unjoined': 1" in log or "spans_unjoined=1" in log, log[-2000:]
