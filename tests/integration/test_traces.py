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


def test_rag_scores_components_and_traces_through_the_worker(settings: Settings, tmp_path: Path) -> None:
    """FAQ answers with their own passages (index kb-good) or the next question's (kb-bad), retriever and LLM
    spans (the retriever slow whenever the user gave a thumbs down), through the worker with embeddings on."""
    import json
    import random

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings, get_settings

    faq = json.loads((Path(__file__).parents[1] / "data" / "rag_faq.json").read_text())
    settings = settings.model_copy(update={"embed_backend": "onnx"})
    rng = random.Random(4)
    events: list[dict[str, Any]] = []
    for i in range(96):
        q = i % len(faq)
        good = i % 2 == 0
        passages = faq[q]["passages"] if good else faq[(q + 1) % len(faq)]["passages"]
        down = rng.random() < (0.1 if good else 0.6)
        ts = f"2026-11-30T11:{i // 60:02d}:{i % 60:02d}Z"
        session, trace, gid = f"s{i % 7}", f"trace-{i}", f"g{i}"
        retriever_ms = 1800 if down else 120
        start = f"2026-11-30T10:{i // 60:02d}:{i % 60:02d}Z"
        events.append(span(session, f"r{i}", trace, "retriever", start, _plus_ms(start, retriever_ms)))
        events.append(generation(session, gid, trace, ts, input=faq[q]["q"], output=faq[q]["answer"],
                                 context=passages, index_version="kb-good" if good else "kb-bad"))  # fmt: skip
        events.append(span(session, f"l{i}", trace, "llm", _plus_ms(start, retriever_ms), _plus_ms(start, 3000)))
        events.append({"type": "feedback", "event_id": f"f{i}", "ts": ts, "session_id": session, "app": "rag-bot",
                       "generation_id": gid, "thumbs": "down" if down else "up"})  # fmt: skip
    with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
        pub.publish_many(events)
    worker = spawn_cli(["worker"], settings.to_env(), tmp_path / "worker.log")
    try:
        wait_for(lambda: landed_counts(settings.data_dir) == (len(events), 0) or None, 240, what="the worker",
                 alive=worker)  # fmt: skip
        wait_for(lambda: len(span_scores(settings.data_dir)) == 192 or None, 60, what="span scores", alive=worker)
    finally:
        stop(worker)
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=settings.data_dir)
    client = TestClient(app)
    window = {"since": "2026-11-30T00:00:00Z", "until": "2026-12-01T00:00:00Z"}
    # the RAG scores tell the right passages from the wrong ones, per question
    params = {"dimension": "index_version", "a": "kb-bad", "b": "kb-good", "metrics": "context_relevance,groundedness"}
    compare = client.get("/v1/compare", params={**params, **window}).json()
    rows = {r["metric"]: r for r in compare["data"]}
    assert rows["context_relevance"]["a"]["n"] == rows["context_relevance"]["b"]["n"] == 48
    assert rows["context_relevance"]["difference"] > 0.3 and rows["context_relevance"]["significant"]
    assert rows["groundedness"]["difference"] > 0.3 and rows["groundedness"]["significant"]
    # the slow retriever is where the thumbs-down generations fail
    parts = client.get("/v1/components", params={**window, "app": "rag-bot", "signals": "thumbs_down"}).json()
    assert [p["component"] for p in parts["data"]] == ["retriever", "llm"]
    assert parts["data"][0]["implicated_share_in_failed"] == 1.0 and parts["data"][0]["implicated_share_in_ok"] == 0
    # one trace: the LLM span under nothing (no parent given), both spans with their durations, the feedback
    body = client.get("/v1/traces/trace-3").json()
    assert sorted((s["component"], s["duration_ms"]) for s in body["spans"]) == sorted(
        [("retriever", 1800.0 if body["generations"][0]["thumbs_up"] == 0 else 120.0),
         ("llm", 3000.0 - (1800.0 if body["generations"][0]["thumbs_up"] == 0 else 120.0))])  # fmt: skip
    g = body["generations"][0]
    assert g["index_version"] == "kb-bad" and [f["type"] for f in g["follow_ups"]] == ["feedback"]
    assert {"context_relevance", "groundedness", "span_duration_ms"} <= {s["metric"] for s in g["scores"]}


def _plus_ms(ts: str, ms: float) -> str:
    from datetime import datetime, timedelta

    moment = datetime.fromisoformat(ts.replace("Z", "+00:00")) + timedelta(milliseconds=ms)
    return moment.isoformat().replace("+00:00", "Z")
