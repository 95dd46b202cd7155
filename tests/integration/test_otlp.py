"""The OTLP receiver with a real OpenTelemetry SDK and the real broker: a traced RAG app's spans become span and
generation events, scored by the worker and visible through the trace endpoint; bad requests get OTLP's answers;
an exporter's retry after a 503 lands each span once."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import uvicorn
from fastapi.testclient import TestClient
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import create_app as create_api
from api.settings import ApiSettings
from api.settings import get_settings as api_settings
from sinks.catalog import connect, landed_counts, query
from streams.local.launch import spawn_cli, stop, wait_for
from streams.otlp.receiver import create_app
from streams.settings import Settings

pytestmark = pytest.mark.integration
PRICES = {"gpt-4o-mini": (0.15, 0.6)}


class Receiver:
    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"


@pytest.fixture
def receiver(settings: Settings) -> Iterator[Receiver]:
    r = Receiver(settings.model_copy(update={"otlp_prices": PRICES, "otlp_max_body_bytes": 256 * 1024}))
    r.thread.start()
    wait_for(lambda: r.server.started or None, 30, 0.05, "the receiver")
    yield r
    r.server.should_exit = True
    r.thread.join(10)


def traced_app(provider: TracerProvider, question: str, answer: str, session: str) -> str:
    """One request of a RAG app, instrumented as OpenLLMetry does: a root span, a retriever span, an LLM span with
    GenAI attributes. Returns the trace id."""
    tracer = provider.get_tracer("rag-app.handlers")
    with tracer.start_as_current_span("handle_question", attributes={"session.id": session}) as root:
        with tracer.start_as_current_span("vector_search", attributes={
            "evalstream.component": "retriever", "session.id": session, "db.system": "qdrant",
        }):  # fmt: skip
            time.sleep(0.02)
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "session.id": session, "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 40,
            "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "You answer billing questions.",
            "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": question,
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": answer,
            "evalstream.prompt_version": "billing-v3", "evalstream.index_version": "kb-12",
        }):  # fmt: skip
            time.sleep(0.03)
        return format(root.get_span_context().trace_id, "032x")


def provider_for(exporter: Any) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "billing-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def test_a_traced_app_lands_scored_and_bad_requests_get_otlp_answers(
    settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"embed_backend": "onnx"})
    # protobuf, from the SDK's own OTLP/HTTP exporter
    provider = provider_for(OTLPSpanExporter(endpoint=receiver.url))
    proto_trace = traced_app(provider, "Why was I charged twice?", "The second charge is a pending hold.", "s-1")
    provider.shutdown()
    # JSON (the Python exporter only speaks protobuf): the SDK's spans encoded as OTLP JSON, gzipped
    memory = InMemorySpanExporter()
    local = provider_for(memory)
    json_trace = traced_app(local, "How do I get a refund?", "Open Billing and choose Refund.", "s-2")
    body = json_format.MessageToDict(encode_spans(memory.get_finished_spans()))
    for rs in body["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:  # OTLP JSON: ids as hex
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    sent = httpx.post(receiver.url, content=gzip.compress(json.dumps(body).encode()),
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})  # fmt: skip
    assert sent.status_code == 200 and sent.json() == {}, sent.text
    # one span whose end is before its start: accepted as partial success, dead-lettered by the worker
    bad = json.loads(json.dumps(body))
    bad_span = bad["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    bad_span["spanId"], bad_span["endTimeUnixNano"] = "00000000000000ff", "1"
    bad["resourceSpans"][0]["scopeSpans"][0]["spans"] = [bad_span]
    partial = httpx.post(receiver.url, json=bad)
    assert partial.status_code == 200
    assert partial.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "span `end` is before `start`" in partial.json()["partialSuccess"]["errorMessage"]
    # requests that are not OTLP traces
    assert httpx.post(receiver.url, content=b"\xff\x00garbage", headers={"Content-Type": "application/x-protobuf"}
                      ).status_code == 400  # fmt: skip
    assert httpx.post(receiver.url, content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    bomb = gzip.compress(b"\x0a" * (1 << 20))
    too_big = httpx.post(receiver.url, content=bomb,
                         headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})  # fmt: skip
    assert too_big.status_code == 413
    assert httpx.post(receiver.url, content=b"x" * (300 * 1024), headers={"Content-Type": "application/x-protobuf"}
                      ).status_code == 413  # fmt: skip

    # 3 spans + 1 generation per trace, twice, and the rejected span (in the DLQ)
    worker = spawn_cli(["worker"], settings.to_env(), tmp_path / "worker.log")
    try:
        wait_for(lambda: landed_counts(settings.data_dir) == (8, 1) or None, 240, what="the worker", alive=worker)
        wait_for(lambda: _scored(settings.data_dir, "relevance") == 2 or None, 60, what="embeddings", alive=worker)
    finally:
        stop(worker)
    con = connect(settings.data_dir)
    generations = query(con, """SELECT trace_id, app, session_id, model, route, prompt_version, index_version,
                                        input, output, tokens_in, tokens_out, cost_usd
                                 FROM events WHERE type = 'generation' ORDER BY session_id""")[1]  # fmt: skip
    assert generations == [
        (proto_trace, "billing-bot", "s-1", "gpt-4o-mini", "chat", "billing-v3", "kb-12", "Why was I charged twice?",
         "The second charge is a pending hold.", 120, 40, pytest.approx((120 * 0.15 + 40 * 0.6) / 1e6)),
        (json_trace, "billing-bot", "s-2", "gpt-4o-mini", "chat", "billing-v3", "kb-12", "How do I get a refund?",
         "Open Billing and choose Refund.", 120, 40, pytest.approx((120 * 0.15 + 40 * 0.6) / 1e6)),
    ]  # fmt: skip
    spans = query(con, """SELECT component, count(*) FROM scores WHERE metric = 'span_duration_ms'
                          GROUP BY ALL ORDER BY 1""")[1]  # fmt: skip
    assert spans == [("llm", 2), ("rag-app.handlers", 2), ("retriever", 2)]  # the root: its scope's name
    reason = query(con, "SELECT reason FROM dlq")[1][0][0]
    assert reason == "span `end` is before `start`"
    # the trace endpoint: the root with its two children, the generation with its scores
    api = create_api()
    api.dependency_overrides[api_settings] = lambda: ApiSettings(data_dir=settings.data_dir)
    trace = TestClient(api).get(f"/v1/traces/{proto_trace}").json()
    assert [s["name"] for s in trace["spans"]] == ["handle_question"]
    assert [c["component"] for c in trace["spans"][0]["children"]] == ["retriever", "llm"]
    metrics = {s["metric"] for s in trace["generations"][0]["scores"]}
    assert {"latency_ms", "tokens_in", "cost_usd", "relevance", "span_duration_ms"} <= metrics


def _scored(data: Path, metric: str) -> int:
    rows = query(connect(data), "SELECT count(*) FROM scores WHERE metric = $m", {"m": metric})[1]
    return int(rows[0][0])  # type: ignore[call-overload]


def test_an_exporter_retrying_after_a_503_lands_each_span_once(
    settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    slots = receiver.app.state.slots
    held = [slots.acquire(blocking=False) for _ in range(settings.otlp_max_in_flight)]
    assert all(held)  # the receiver is busy: the exporter's first tries get 503 with Retry-After
    threading.Timer(1.5, lambda: [slots.release() for _ in held]).start()
    attempts: list[int] = []
    session = requests.Session()  # counts what the exporter saw (its retries are its own)
    session.hooks["response"].append(lambda r, *a, **k: attempts.append(r.status_code))
    exporter = OTLPSpanExporter(endpoint=receiver.url, timeout=20, session=session)
    provider = provider_for(exporter)
    traced_app(provider, "Can I pay by invoice?", "Yes, on the annual plan.", "s-9")
    provider.shutdown()
    assert attempts[0] == 503 and attempts[-1] == 200
    worker = spawn_cli(["worker"], settings.model_copy(update={"embed_backend": "off"}).to_env(),
                       tmp_path / "worker.log")  # fmt: skip
    try:
        wait_for(lambda: landed_counts(settings.data_dir)[0] >= 4 or None, 180, what="the worker", alive=worker)
        time.sleep(3)  # anything sent twice would land by now
    finally:
        stop(worker)
    ids = [r[0] for r in query(connect(settings.data_dir), "SELECT event_id FROM events")[1]]
    assert len(ids) == len(set(ids)) == 4
