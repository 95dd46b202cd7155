"""``/v1/traces/{id}``, ``/v1/components`` and the index_version / component dimensions, on data written as the
worker writes it; and files written before those columns existed."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings, get_settings
from sinks.catalog import connect
from sinks.parquet import PartitionedParquetWriter, file_name
from sinks.schemas import EVENTS_SCHEMA, SCORES_SCHEMA

T0 = datetime(2026, 11, 30, 10)
LABELS = {"app": "rag-bot", "route": "answer", "prompt_version": "v1"}


def client_for(root: Path) -> TestClient:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=root)
    return TestClient(app)


def write(root: Path, events: list[dict[str, Any]], scores: list[dict[str, Any]], offset: int = 0) -> None:
    for name, schema, rows in (("events", EVENTS_SCHEMA, events), ("scores", SCORES_SCHEMA, scores)):
        if rows:
            PartitionedParquetWriter(root, name, schema, "ts").write("t", 0, offset, offset + len(rows), rows)


class Traffic:
    """Generations with their spans and outcomes, as events and score rows."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []

    def generation(self, gid: str, trace: str, ts: datetime, model: str = "m1", index: str = "kb-1",
                   thumbs: float | None = None) -> None:  # fmt: skip
        labels = {**LABELS, "model": model, "index_version": index}
        self.events.append({"event_id": f"e-{gid}", "type": "generation", "ts": ts, "session_id": "s",
                            "generation_id": gid, "trace_id": trace, "input": "q", "output": "a",
                            "tags": [("region", "eu")], **labels})  # fmt: skip
        self.scores.append({"event_id": f"e-{gid}", "generation_id": gid, "ts": ts, "metric": "latency_ms",
                            "value": 500.0, **labels})  # fmt: skip
        if thumbs is not None:
            self.events.append({"event_id": f"f-{gid}", "type": "feedback", "ts": ts + timedelta(seconds=5),
                                "session_id": "s", "app": "rag-bot", "generation_id": gid,
                                "thumbs": "up" if thumbs else "down"})  # fmt: skip
            self.scores.append({"event_id": f"f-{gid}", "generation_id": gid, "ts": ts + timedelta(seconds=5),
                                "metric": "thumbs_up", "value": thumbs, **labels})  # fmt: skip

    def span(self, sid: str, trace: str, gid: str | None, component: str, start: datetime, ms: float,
             error: bool = False, parent: str | None = None, model: str = "m1",
             index: str = "kb-1") -> None:  # fmt: skip
        end = start + timedelta(milliseconds=ms)
        self.events.append({"event_id": f"e-{sid}", "type": "span", "ts": end, "session_id": "s", "app": "rag-bot",
                            "trace_id": trace, "span_id": sid, "parent_span_id": parent, "component": component,
                            "name": f"{component}-call", "start": start, "end": end,
                            "status": "error" if error else "ok"})  # fmt: skip
        labels = {**LABELS, "model": model, "index_version": index} if gid else {"app": "rag-bot"}
        for metric, value in (("span_duration_ms", ms), ("span_error", float(error))):
            self.scores.append({"event_id": f"e-{sid}", "generation_id": gid, "ts": end, "metric": metric,
                                "value": value, "component": component, **labels})  # fmt: skip


def test_a_trace_is_its_span_tree_its_generation_and_what_the_user_did(tmp_path: Path) -> None:
    t = Traffic()
    t.span("root", "t1", "g1", "router", T0, 900)
    t.span("r", "t1", "g1", "retriever", T0 + timedelta(milliseconds=10), 300, parent="root")
    t.span("rr", "t1", "g1", "reranker", T0 + timedelta(milliseconds=320), 40, parent="r")
    t.span("llm", "t1", "g1", "llm", T0 + timedelta(milliseconds=400), 450, error=True, parent="root")
    t.span("lost", "t1", "g1", "cache", T0 + timedelta(milliseconds=5), 1, parent="not-in-trace")
    t.span("x", "t1", "g1", "loop", T0 + timedelta(milliseconds=6), 1, parent="y")
    t.span("y", "t1", "g1", "loop", T0 + timedelta(milliseconds=7), 1, parent="x")
    t.generation("g1", "t1", T0 + timedelta(seconds=1), thumbs=0.0)
    t.events.append({"event_id": "regen", "type": "regenerate", "ts": T0 + timedelta(seconds=9), "session_id": "s",
                     "app": "rag-bot", "generation_id": "g1"})  # fmt: skip
    t.generation("g-other", "t2", T0)
    write(tmp_path, t.events, t.scores)
    client = client_for(tmp_path)
    body = client.get("/v1/traces/t1").json()
    assert body["trace_id"] == "t1" and body["span_count"] == 7
    roots = {n["span_id"]: n for n in body["spans"]}
    assert [c["span_id"] for c in roots["root"]["children"]] == ["r", "llm"]
    retriever = roots["root"]["children"][0]
    assert retriever["duration_ms"] == 300.0 and retriever["children"][0]["span_id"] == "rr"
    assert roots["root"]["children"][1]["status"] == "error"
    assert roots["lost"]["orphan"] is True
    looped = [n for n in body["spans"] if n.get("cycle")]
    assert [n["span_id"] for n in looped] == ["x"] and [c["span_id"] for c in looped[0]["children"]] == ["y"]
    assert [g["generation_id"] for g in body["generations"]] == ["g1"]
    g1 = body["generations"][0]
    assert g1["index_version"] == "kb-1" and g1["thumbs_up"] == 0.0 and g1["regenerated"] == 0  # regenerated: a score
    assert [f["type"] for f in g1["follow_ups"]] == ["feedback", "regenerate"] and g1["follow_ups"][0][
        "thumbs"
    ] == "down"
    assert {s["metric"] for s in g1["scores"]} >= {"latency_ms", "thumbs_up", "span_duration_ms", "span_error"}
    assert client.get("/v1/traces/nope").status_code == 404


def planted(seed: int = 3) -> Traffic:
    """400 generations with a retriever and an LLM span; the failed ones (thumbs down, 20%) mostly had a slow
    retriever; the LLM errors now and then everywhere."""
    rng = random.Random(seed)
    t = Traffic()
    for i in range(400):
        ts = T0 + timedelta(seconds=30 * i)
        failed = rng.random() < 0.2
        slow = failed and rng.random() < 0.8
        model, index = ("m1", "kb-1") if i % 2 else ("m2", "kb-2")
        t.span(f"r{i}", f"t{i}", f"g{i}", "retriever", ts, rng.uniform(1500, 2500) if slow else rng.uniform(80, 150),
               model=model, index=index)  # fmt: skip
        t.span(f"l{i}", f"t{i}", f"g{i}", "llm", ts + timedelta(seconds=1), rng.uniform(300, 600),
               error=rng.random() < 0.03, model=model, index=index)  # fmt: skip
        t.generation(f"g{i}", f"t{i}", ts + timedelta(seconds=2), model, index, thumbs=0.0 if failed else 1.0)
    return t


def test_components_say_where_failures_occur(tmp_path: Path) -> None:
    t = planted()
    write(tmp_path, t.events, t.scores)
    client = client_for(tmp_path)
    window = {"since": T0.isoformat() + "Z", "until": (T0 + timedelta(days=1)).isoformat() + "Z"}
    body = client.get("/v1/components", params={**window, "app": "rag-bot"}).json()
    assert [c["component"] for c in body["data"]] == ["retriever", "llm"]
    retriever, llm = body["data"]
    durations = [s["value"] for s in t.scores if s["metric"] == "span_duration_ms" and s["component"] == "retriever"]
    assert retriever["spans"] == 400 and retriever["p50_ms"] == pytest.approx(sorted(durations)[199:201][0], rel=0.01)
    failed = sum(1 for s in t.scores if s["metric"] == "thumbs_up" and s["value"] == 0.0)
    assert retriever["failed_generations"] == llm["failed_generations"] == failed
    assert retriever["implicated_share_in_failed"] > 0.7 > 0.1 > retriever["implicated_share_in_ok"]
    assert llm["implicated_share_in_failed"] < 0.3
    errors = [s for s in t.scores if s["metric"] == "span_error" and s["component"] == "llm"]
    assert llm["error_rate"] == pytest.approx(sum(s["value"] for s in errors) / len(errors))
    assert client.get("/v1/components", params={**window, "signals": "oops"}).status_code == 422
    none = client.get("/v1/components", params={**window, "app": "other"}).json()
    assert none == {"data": [], "count": 0, "signals": body["signals"]}


def test_index_version_and_component_are_dimensions(tmp_path: Path) -> None:
    t = planted()
    write(tmp_path, t.events, t.scores)
    client = client_for(tmp_path)
    series = client.get("/v1/metrics/timeseries", params={"metric": "span_duration_ms", "window": "1d",
                                                           "group_by": "component"}).json()  # fmt: skip
    assert {(p["group"], p["count"]) for p in series["data"]} == {("retriever", 400), ("llm", 400)}
    params = {"metric": "span_duration_ms", "window": "1d", "component": "llm", "group_by": "index_version"}
    only = client.get("/v1/metrics/timeseries", params=params).json()
    assert {(p["group"], p["count"]) for p in only["data"]} == {("kb-1", 200), ("kb-2", 200)}
    params = {"dimension": "index_version", "a": "kb-1", "b": "kb-2", "metrics": "span_duration_ms,thumbs_up",
              "component": "retriever"}  # fmt: skip
    compare = client.get("/v1/compare", params=params).json()
    rows = {r["metric"]: r for r in compare["data"]}
    assert rows["span_duration_ms"]["a"]["n"] == rows["span_duration_ms"]["b"]["n"] == 200
    retriever_ms = [s["value"] for s in t.scores if s["metric"] == "span_duration_ms" and s["component"] == "retriever"
                    and s["index_version"] == "kb-1"]  # fmt: skip
    assert rows["span_duration_ms"]["a"]["value"] == pytest.approx(sum(retriever_ms) / len(retriever_ms))
    assert rows["thumbs_up"]["a"]["n"] == 200  # thumbs are not span scores: the component filter leaves them out
    drift = client.get("/v1/drift", params={
        "signal": "span_duration_ms", "component": "retriever", "group_by": "index_version",
        "reference_since": T0.isoformat() + "Z", "reference_until": (T0 + timedelta(hours=1)).isoformat() + "Z",
        "current_since": (T0 + timedelta(hours=1)).isoformat() + "Z",
        "current_until": (T0 + timedelta(days=1)).isoformat() + "Z"}).json()  # fmt: skip
    assert {p["group"] for p in drift["data"]} == {"kb-1", "kb-2"}
    assert all(p["n_reference"] == 60 for p in drift["data"])  # 120 generations in the first hour, half per index
    mix = client.get("/v1/drift", params={
        "signal": "index_version", "reference_since": T0.isoformat() + "Z",
        "reference_until": (T0 + timedelta(hours=1)).isoformat() + "Z",
        "current_since": (T0 + timedelta(hours=1)).isoformat() + "Z",
        "current_until": (T0 + timedelta(days=1)).isoformat() + "Z"}).json()  # fmt: skip
    assert mix["data"][0]["method"] != "" and not mix["data"][0]["drifted"]
    con = connect(tmp_path)
    assert con.execute("SELECT tags['region'], count(*) FROM generations GROUP BY ALL").fetchall() == [("eu", 400)]


def test_files_written_before_the_new_columns_still_answer(tmp_path: Path) -> None:
    """Files without index_version, component or tags (an older worker) beside new ones: the views give NULL."""
    old_scores = pa.schema([f for f in SCORES_SCHEMA if f.name not in ("index_version", "component")])
    old_events = pa.schema([f for f in EVENTS_SCHEMA if f.name not in ("index_version", "tags")])
    folder = tmp_path / "scores" / "dt=2026-11-29"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"event_id": ["o1"], "generation_id": ["old"], "ts": [T0 - timedelta(days=1)],
                             "app": ["rag-bot"], "route": ["answer"], "model": ["m1"], "prompt_version": ["v1"],
                             "metric": ["latency_ms"], "value": [700.0]}, schema=old_scores),
                   folder / file_name("t", 1, 0, 0))  # fmt: skip
    events = tmp_path / "events" / "dt=2026-11-29"
    events.mkdir(parents=True)
    row = {name: [None] for name in old_events.names} | {
        "event_id": ["o1"], "type": ["generation"], "ts": [T0 - timedelta(days=1)], "session_id": ["s"],
        "app": ["rag-bot"], "generation_id": ["old"], "route": ["answer"], "model": ["m1"], "prompt_version": ["v1"],
        "input": ["q"], "output": ["a"]}  # fmt: skip
    pq.write_table(pa.table(row, schema=old_events), events / file_name("t", 1, 0, 0))
    client = client_for(tmp_path)
    # only old files: the new dimensions exist, empty
    series = client.get("/v1/metrics/timeseries", params={"metric": "latency_ms", "window": "1d",
                                                           "group_by": "index_version"}).json()  # fmt: skip
    assert [(p["group"], p["count"]) for p in series["data"]] == [(None, 1)]
    con = connect(tmp_path)
    assert con.execute("SELECT index_version, tags FROM generations").fetchall() == [(None, None)]
    # and beside new files
    t = planted()
    write(tmp_path, t.events, t.scores)
    client = client_for(tmp_path)
    series = client.get("/v1/metrics/timeseries", params={"metric": "latency_ms", "window": "1w",
                                                           "group_by": "index_version"}).json()  # fmt: skip
    assert {(p["group"], p["count"]) for p in series["data"]} == {(None, 1), ("kb-1", 200), ("kb-2", 200)}
    assert client.get("/v1/traces/t7").status_code == 200
