"""``evalstream otlp``: an OTLP/HTTP receiver for traces that turns spans into evalstream events on Kafka.

``POST /v1/traces`` takes an ``ExportTraceServiceRequest`` (protobuf or JSON, gzip or not: :mod:`.decode`), maps
each span to events (:mod:`.mapping`), validates them with the SDK's schema and sends them with the SDK's key
(``session_id``) and contract, then answers once Kafka has acknowledged every one of them:

- 200 with an empty ``ExportTraceServiceResponse``; when some spans' events are invalid, 200 with
  ``partial_success`` (``rejected_spans`` and the first reasons): those events still go to the events topic as
  they are, so the worker dead-letters them with the reason and counts them, as it does for any producer;
- 400 (not retryable) for a body that is not an OTLP traces request, 413 for one over ``EVALSTREAM_OTLP_MAX_BODY_BYTES``
  (after decompression), 415 for another content type or encoding; the body a ``google.rpc.Status``;
- 503 with ``Retry-After`` (retryable: exporters send the batch again) when ``EVALSTREAM_OTLP_MAX_IN_FLIGHT``
  requests are already being handled, when the producer's queue is too full to take the request whole, or when
  Kafka did not acknowledge the request's events within ``EVALSTREAM_OTLP_DELIVERY_TIMEOUT_S``. Nothing is
  buffered beyond that: back-pressure reaches the exporter.

Events are only sent once the whole request is decoded and mapped, so a refused request sends nothing. A 503 after a
delivery timeout may leave some of the request's events delivered, and the exporter's retry sends them again
with the same event ids (derived from the span ids): the worker stores such a duplicate twice (issue 20's
de-duplication would remove it).

Example (a request refused before anything is sent; nothing listens on port 1)::

    >>> from fastapi.testclient import TestClient
    >>> from streams.settings import Settings
    >>> client = TestClient(create_app(Settings(bootstrap_servers="127.0.0.1:1")))
    >>> r = client.post("/v1/traces", content=b"{}", headers={"Content-Type": "text/plain"})
    >>> r.status_code, r.headers["content-type"]
    (415, 'application/json')
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from fastapi import FastAPI, Request, Response
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.concurrency import run_in_threadpool

from streams.otlp.decode import JSON, PROTOBUF, BadRequest, TooLarge, UnsupportedMediaType, decode
from streams.otlp.mapping import MappingSettings, attributes, span_events
from streams.sdk.schema import EventValidationError, validate_event
from streams.settings import Settings

log = logging.getLogger("evalstream.otlp")
QUEUE_LIMIT = 50_000  # messages waiting in the producer: a request that would pass it is answered 503


@dataclass
class Outcome:
    """What one request sends: (key, value) pairs, and the spans whose events were refused, with reasons."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


def map_request(request: ExportTraceServiceRequest, settings: MappingSettings) -> Outcome:
    """Every span's events, validated: valid ones as the SDK sends them, invalid ones as they are (the worker
    dead-letters them with the reason)."""
    out = Outcome()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                refused = False
                for event in span_events(span, resource, scope_spans.scope.name, settings):
                    key = str(event["session_id"]).encode()
                    try:
                        model = validate_event(event)
                    except EventValidationError as exc:
                        refused = True
                        if len(out.reasons) < 5:
                            out.reasons.append(f"span {span.span_id.hex() or '?'} ({event['type']}): {exc.reason}")
                        out.messages.append((key, json.dumps(event, ensure_ascii=False).encode()))
                        continue
                    out.messages.append((key, model.to_json_bytes()))
                out.rejected += refused
    return out


class Deliveries:
    """Counts one request's delivery reports (served by any thread's ``poll``)."""

    def __init__(self, expected: int) -> None:
        self.pending = expected
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self.done = threading.Event()
        if expected == 0:
            self.done.set()

    def report(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is not None:
                self.failed.append(err.str())
            self.pending -= 1
            if self.pending == 0:
                self.done.set()


def _status(code: int, message: str, kind: str, retry_after: int | None = None) -> Response:
    status = status_pb2.Status(code=code, message=message)
    body = json_format.MessageToJson(status).encode() if kind == JSON else status.SerializeToString()
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return Response(body, status_code=code, media_type=kind, headers=headers)


def _answer(outcome: Outcome, kind: str) -> Response:
    response = ExportTraceServiceResponse()
    if outcome.rejected:
        response.partial_success.rejected_spans = outcome.rejected
        response.partial_success.error_message = "; ".join(outcome.reasons)
    body = json_format.MessageToJson(response).encode() if kind == JSON else response.SerializeToString()
    return Response(body, status_code=200, media_type=kind)


def create_app(settings: Settings | None = None, producer: Producer | None = None) -> FastAPI:
    """The receiver (``uvicorn --factory streams.otlp.receiver:create_app``); one producer for its lifetime."""
    settings = settings or Settings()
    mapping = MappingSettings(
        settings.otlp_component_attribute, settings.otlp_route_attribute, settings.otlp_prompt_version_attribute,
        settings.otlp_index_version_attribute, {m: (p[0], p[1]) for m, p in settings.otlp_prices.items()},
    )  # fmt: skip
    slots = threading.BoundedSemaphore(settings.otlp_max_in_flight)
    state: dict[str, Producer] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["producer"] = producer if producer is not None else Producer({
            "bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "queue.buffering.max.messages": 2 * QUEUE_LIMIT,
            "message.timeout.ms": int(max(settings.otlp_delivery_timeout_s, 1) * 1000) + 60_000,
        })  # fmt: skip
        yield
        kafka = state.pop("producer")
        kafka.flush(10)
        if producer is None:
            kafka.close()  # its threads would otherwise keep reconnecting to a broker that went away

    app = FastAPI(title="evalstream OTLP receiver", lifespan=lifespan)
    app.state.slots = slots  # the in-flight limit, visible to tests and operators

    def send(outcome: Outcome) -> str | None:
        """Produce and wait for every acknowledgement; the reason for a 503, or None."""
        if not outcome.messages:
            return None
        kafka = state["producer"]
        if len(kafka) + len(outcome.messages) > QUEUE_LIMIT:
            return "the Kafka producer's queue is full"
        deliveries = Deliveries(len(outcome.messages))
        for key, value in outcome.messages:
            kafka.produce(settings.events_topic, key=key, value=value, on_delivery=deliveries.report)
        deadline = time.monotonic() + settings.otlp_delivery_timeout_s
        while not deliveries.done.is_set() and time.monotonic() < deadline:
            kafka.poll(0.05)
        if not deliveries.done.is_set():
            return f"Kafka did not acknowledge {deliveries.pending} events in {settings.otlp_delivery_timeout_s:g} s"
        if deliveries.failed:
            return f"Kafka refused {len(deliveries.failed)} events: {deliveries.failed[0]}"
        return None

    @app.post("/v1/traces")
    async def traces(request: Request) -> Response:
        kind = JSON if (request.headers.get("content-type") or "").startswith(JSON) else PROTOBUF
        if not slots.acquire(blocking=False):
            return _status(503, "too many requests in flight", kind, retry_after=1)
        try:
            body = await request.body()
            try:
                decoded = await run_in_threadpool(
                    decode, body, request.headers.get("content-type"), request.headers.get("content-encoding"),
                    settings.otlp_max_body_bytes,
                )  # fmt: skip
            except UnsupportedMediaType as exc:
                return _status(415, str(exc), JSON)
            except TooLarge as exc:
                return _status(413, str(exc), kind)
            except BadRequest as exc:
                return _status(400, str(exc), kind)
            outcome = await run_in_threadpool(map_request, decoded, mapping)
            problem = await run_in_threadpool(send, outcome)
            if problem is not None:
                log.warning("answering 503: %s", problem)
                return _status(503, problem, kind, retry_after=1)
            return _answer(outcome, kind)
        finally:
            slots.release()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "topic": settings.events_topic}

    return app
