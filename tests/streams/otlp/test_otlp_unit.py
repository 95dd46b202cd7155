"""streams.otlp without a broker: the conventions the mapping reads, the decoding rules, the receiver's answers."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from streams.otlp.decode import BadRequest, TooLarge, UnsupportedMediaType, decode
from streams.otlp.mapping import MappingSettings, span_events
from streams.otlp.receiver import create_app, map_request
from streams.sdk.schema import validate_event
from streams.settings import Settings

T0 = 1_764_496_800_000_000_000


def span(attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]] = (), **fields: Any) -> trace_pb2.Span:  # type: ignore[assignment]
    times = {"start_time_unix_nano": T0, "end_time_unix_nano": T0 + 1_500_000_000}
    s = trace_pb2.Span(trace_id=bytes(range(16)), span_id=bytes(range(1, 9)), name="llm call",
                       **{**times, **fields})  # fmt: skip
    for key, value in attrs.items():
        target = s.attributes.add(key=key).value
        if isinstance(value, bool):
            target.bool_value = value
        elif isinstance(value, int):
            target.int_value = value
        elif isinstance(value, float):
            target.double_value = value
        else:
            target.string_value = value
    for name, event_attrs in events:
        e = s.events.add(name=name)
        for key, value in event_attrs.items():
            e.attributes.add(key=key).value.string_value = value
    return s


def generation(s: trace_pb2.Span, settings: MappingSettings | None = None, resource: dict | None = None) -> dict:
    events = span_events(s, resource or {"service.name": "bot"}, "scope", settings or MappingSettings())
    assert len(events) == 2 and events[1]["type"] == "generation"
    validate_event(events[0])
    validate_event(events[1])
    return events[1]


@pytest.mark.parametrize(
    ("attrs", "events"),
    [
        ({"gen_ai.input.messages": json.dumps([{"role": "system", "parts": [{"type": "text", "content": "be kind"}]},
                                               {"role": "user", "parts": [{"type": "text", "content": "Q?"}]}]),
          "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "A."}]}])},
         []),  # the current GenAI conventions
        ({}, [("gen_ai.user.message", {"content": "Q?"}), ("gen_ai.choice", {"message": '{"content": "A."}'})]),
        ({"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "earlier",
          "gen_ai.prompt.1.role": "assistant", "gen_ai.prompt.1.content": "x",
          "gen_ai.prompt.2.role": "user", "gen_ai.prompt.2.content": "Q?",
          "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "A."}, []),  # OpenLLMetry
        ({"gen_ai.prompt": "Q?", "gen_ai.completion": "A."}, []),
        ({"llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "Q?",
          "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "A."}, []),
        ({"input.value": "Q?", "output.value": "A."}, []),  # OpenInference
    ],
)  # fmt: skip
def test_prompt_and_completion_in_every_convention(attrs: dict[str, Any], events: list) -> None:
    g = generation(span({"gen_ai.request.model": "m", **attrs}, events))
    assert (g["input"], g["output"]) == ("Q?", "A.")


def test_labels_tokens_cost_and_error() -> None:
    s = span({"gen_ai.response.model": "gpt-4o", "gen_ai.request.model": "gpt-4o-2024", "gen_ai.operation.name": "chat",
              "gen_ai.usage.prompt_tokens": 1000, "gen_ai.usage.completion_tokens": 500, "session.id": "s-7",
              "team.route": "billing", "team.prompt": "p-9", "evalstream.index_version": "kb-2"},
             status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="rate limited"))  # fmt: skip
    settings = MappingSettings(route_attribute="team.route", prompt_version_attribute="team.prompt",
                               prices={"gpt-4o": (2.5, 10.0)})  # fmt: skip
    g = generation(s, settings, {"service.name": "support-bot"})
    assert {k: g[k] for k in ("app", "session_id", "model", "route", "prompt_version", "index_version", "tokens_in",
                              "tokens_out", "cost_usd", "latency_ms", "error", "ts")} == {
        "app": "support-bot", "session_id": "s-7", "model": "gpt-4o", "route": "billing", "prompt_version": "p-9",
        "index_version": "kb-2", "tokens_in": 1000, "tokens_out": 500, "cost_usd": 0.0075, "latency_ms": 1500.0,
        "error": "rate limited", "ts": "2025-11-30T10:00:01.500000Z",
    }  # fmt: skip
    assert g["generation_id"] == f"{bytes(range(16)).hex()}-{bytes(range(1, 9)).hex()}"


def test_plain_spans_and_their_components() -> None:
    def component(attrs: dict[str, Any], scope: str = "my.lib") -> str:
        events = span_events(span(attrs), {}, scope, MappingSettings())
        assert len(events) == 1 and events[0]["app"] == "unknown_service"
        return events[0]["component"]

    assert component({"evalstream.component": "reranker", "openinference.span.kind": "RETRIEVER"}) == "reranker"
    assert component({"openinference.span.kind": "RETRIEVER"}) == "retriever"
    assert component({}) == "my.lib" and component({}, "") == "unknown"
    only = span_events(span({}), {}, "x", MappingSettings())[0]
    assert only["session_id"] == bytes(range(16)).hex() and only["parent_span_id"] is None
    assert only["status"] == "unset" and only["start"] == "2025-11-30T10:00:00Z"


def request_of(*spans: trace_pb2.Span) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "bot"
    rs.scope_spans.add().spans.extend(spans)
    return req


def test_invalid_spans_are_counted_and_still_sent_for_the_dead_letters() -> None:
    good = span({"gen_ai.request.model": "m"})
    backwards = span({}, start_time_unix_nano=T0 + 10_000, end_time_unix_nano=T0)  # 10 µs backwards
    outcome = map_request(request_of(good, backwards), MappingSettings())
    assert len(outcome.messages) == 3 and outcome.rejected == 1
    assert outcome.reasons == [f"span {bytes(range(1, 9)).hex()} (span): span `end` is before `start`"]


def test_decoding_rules() -> None:
    req = request_of(span({"k": "v"}, kind=trace_pb2.Span.SPAN_KIND_SERVER))
    binary = req.SerializeToString()
    assert decode(binary, "application/x-protobuf", None) == req
    assert decode(gzip.compress(binary), "application/x-protobuf; charset=binary", "gzip") == req
    as_json = json_format.MessageToDict(req)
    as_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0].update(
        traceId=bytes(range(16)).hex(), spanId=bytes(range(1, 9)).hex(), kind=2
    )  # hex ids, a numeric enum
    assert decode(json.dumps(as_json).encode(), "application/json", None) == decode(
        binary, "application/x-protobuf", None
    )
    with pytest.raises(UnsupportedMediaType):
        decode(binary, "application/grpc", None)
    with pytest.raises(UnsupportedMediaType):
        decode(binary, "application/x-protobuf", "br")
    with pytest.raises(TooLarge):
        decode(gzip.compress(b"\x00" * 5000), "application/x-protobuf", "gzip", max_bytes=4096)
    with pytest.raises(TooLarge):
        decode(b"\x00" * 5000, "application/x-protobuf", None, max_bytes=4096)
    for body, kind in ((b"\xff\xff\xff", "application/x-protobuf"), (b"{not json", "application/json"),
                       (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "application/json"),
                       (b"[" * 100_000, "application/json")):  # fmt: skip
        with pytest.raises(BadRequest):
            decode(body, kind, None)
    with pytest.raises(BadRequest):
        decode(gzip.compress(binary)[:-10], "application/x-protobuf", "gzip")


def test_receiver_answers_without_sending_anything_when_the_request_is_bad() -> None:
    client = TestClient(create_app(Settings(bootstrap_servers="127.0.0.1:1", otlp_max_body_bytes=2048)))
    cases = [
        (b"\xff\xff", {"Content-Type": "application/x-protobuf"}, 400),
        (b"{}", {"Content-Type": "text/plain"}, 415),
        (b"x" * 4096, {"Content-Type": "application/x-protobuf"}, 413),
        (b"{}", {"Content-Type": "application/json", "Content-Encoding": "deflate"}, 415),
    ]
    for body, headers, code in cases:
        r = client.post("/v1/traces", content=body, headers=headers)
        assert r.status_code == code, (headers, r.text)
        assert r.json()["code"] == code if r.headers["content-type"] == "application/json" else r.content
    empty = client.post("/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"})
    assert empty.status_code == 200 and empty.content == b""  # no spans: nothing to send, nothing to wait for


class SilentKafka:
    """A producer whose broker never acknowledges (the path a stalled Kafka takes), or whose queue is full."""

    def __init__(self, queued: int = 0) -> None:
        self.queued, self.produced = queued, 0

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.produced += 1

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return self.produced

    def __len__(self) -> int:
        return self.queued + self.produced


def test_a_slow_or_full_kafka_is_a_retryable_503() -> None:
    body = request_of(span({"gen_ai.request.model": "m"})).SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    settings = Settings(bootstrap_servers="127.0.0.1:1", otlp_delivery_timeout_s=0.2)
    slow = SilentKafka()
    with TestClient(create_app(settings, producer=slow)) as client:  # type: ignore[arg-type]
        r = client.post("/v1/traces", content=body, headers=headers)
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and slow.produced == 2
    full = SilentKafka(queued=50_000)
    with TestClient(create_app(settings, producer=full)) as client:  # type: ignore[arg-type]
        r = client.post("/v1/traces", content=body, headers=headers)
    assert r.status_code == 503 and full.produced == 0  # refused whole: nothing of it was sent
