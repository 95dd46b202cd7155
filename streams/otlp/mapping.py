"""OpenTelemetry spans → evalstream events: every span a ``span`` event, a GenAI span also a ``generation``.

The mapping (the README has it as a table):

- ``app``: the resource's ``service.name``; ``session_id``: ``session.id`` or ``gen_ai.conversation.id`` (on the
  span, else the resource), else the trace id, so a trace's events share a Kafka key (the worker's join needs it).
- ``component``: the attribute named by ``component_attribute`` (``evalstream.component``), else ``llm`` for a
  GenAI span, else OpenInference's ``openinference.span.kind`` (lower-cased), else the instrumentation scope's
  name, else ``unknown``. ``status``: ``ok``, ``unset`` or ``error``.
- A GenAI span is one with a model: ``gen_ai.response.model`` / ``gen_ai.request.model`` (the OTel GenAI
  conventions, OpenLLMetry) or ``llm.model_name`` (OpenInference). Its ``generation``: id ``<trace>-<span>``;
  ``route`` from ``route_attribute``, else ``gen_ai.operation.name``, else the span name; ``prompt_version`` and
  ``index_version`` from their attributes (``unversioned`` / none without); tokens from
  ``gen_ai.usage.input_tokens`` / ``output_tokens`` (or the earlier ``prompt_tokens`` / ``completion_tokens``, or
  OpenInference's ``llm.token_count.prompt`` / ``completion``); ``latency_ms`` the span's duration; ``cost_usd``
  from ``prices`` (USD per million input and output tokens, per model); ``error`` the status message of an error
  span; ``input`` the last user message and ``output`` the assistant's answer, from whichever of these the span
  has: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (JSON, current conventions), span events
  ``gen_ai.user.message`` / ``gen_ai.choice``, ``gen_ai.prompt.<i>.content`` / ``gen_ai.completion.<i>.content``
  (OpenLLMetry), ``gen_ai.prompt`` / ``gen_ai.completion``, ``llm.input_messages.<i>.message.content`` /
  ``llm.output_messages.<i>.message.content`` and ``input.value`` / ``output.value`` (OpenInference).
- Event ids are derived from the trace and span ids (``otlp-<trace>-<span>``, ``otlp-gen-…``): an exporter's
  retry of the same spans makes the same events.

Example::

    >>> from opentelemetry.proto.trace.v1 import trace_pb2
    >>> span = trace_pb2.Span(trace_id=bytes(range(16)), span_id=bytes(range(8)), name="chat gpt-4o",
    ...     start_time_unix_nano=1_764_496_800_000_000_000, end_time_unix_nano=1_764_496_800_900_000_000)
    >>> span.attributes.add(key="gen_ai.request.model").value.string_value = "gpt-4o"
    >>> span.attributes.add(key="gen_ai.prompt.0.role").value.string_value = "user"
    >>> span.attributes.add(key="gen_ai.prompt.0.content").value.string_value = "Where is my refund?"
    >>> events = span_events(span, {"service.name": "support-bot"}, "openai", MappingSettings())
    >>> [(e["type"], e.get("component"), e.get("model"), e.get("input")) for e in events]
    [('span', 'llm', None, None), ('generation', None, 'gpt-4o', 'Where is my refund?')]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

STATUS = {trace_pb2.Status.STATUS_CODE_OK: "ok", trace_pb2.Status.STATUS_CODE_UNSET: "unset",
          trace_pb2.Status.STATUS_CODE_ERROR: "error"}  # fmt: skip


@dataclass(frozen=True)
class MappingSettings:
    """Where conventions differ: the attributes that name a span's component, route and versions, and prices."""

    component_attribute: str = "evalstream.component"
    route_attribute: str = "evalstream.route"
    prompt_version_attribute: str = "evalstream.prompt_version"
    index_version_attribute: str = "evalstream.index_version"
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # model -> USD per 1M in, out tokens


def any_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a Python value (arrays and key-value lists too)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def rfc3339(unix_nano: int) -> str:
    moment = datetime.fromtimestamp(unix_nano // 1_000_000_000, UTC).replace(
        microsecond=(unix_nano // 1000) % 1_000_000
    )
    return moment.isoformat().replace("+00:00", "Z")


def _text(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a list of parts (``{"type": "text", "content": …}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("content") or p.get("text") for p in content if isinstance(p, dict)]
        joined = "\n".join(p for p in parts if isinstance(p, str))
        return joined or None
    return None


def _messages(value: Any) -> list[dict[str, Any]]:
    """Messages from a JSON string or a list (``gen_ai.input.messages`` and the like)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [{"role": "user", "content": value}]
    if isinstance(value, dict):
        value = [value]
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _message_text(message: dict[str, Any]) -> str | None:
    return _text(message.get("content")) or _text(message.get("parts")) or _text(message.get("message"))


_INDEXED = re.compile(r"^(gen_ai\.(?:prompt|completion)|llm\.(?:input|output)_messages)\.(\d+)\.(.+)$")


def _indexed(attrs: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``gen_ai.prompt.0.content``-style attributes as lists of messages, per prefix."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in attrs.items():
        match = _INDEXED.match(key)
        if match:
            prefix, index, rest = match[1], int(match[2]), match[3].removeprefix("message.")
            found.setdefault(prefix, {}).setdefault(index, {})[rest] = value
    return {prefix: [by_index[i] for i in sorted(by_index)] for prefix, by_index in found.items()}


def _last(messages: list[dict[str, Any]], roles: tuple[str, ...]) -> str | None:
    texts = [_message_text(m) for m in messages if str(m.get("role", roles[0])) in roles]
    texts = [t for t in texts if t]
    return texts[-1] if texts else None


def prompt_and_completion(span: trace_pb2.Span, attrs: Mapping[str, Any]) -> tuple[str, str]:
    """The last user message and the assistant's answer, from the first convention the span follows."""
    indexed = _indexed(attrs)
    events = {e.name: attributes(e.attributes) for e in span.events}
    inputs = [
        _last(_messages(attrs.get("gen_ai.input.messages")), ("user",)),
        _text(events.get("gen_ai.user.message", {}).get("content")),
        _last(indexed.get("gen_ai.prompt", []), ("user",)),
        _text(attrs.get("gen_ai.prompt")) if isinstance(attrs.get("gen_ai.prompt"), str) else None,
        _last(indexed.get("llm.input_messages", []), ("user",)),
        _text(attrs.get("input.value")),
    ]
    choice = events.get("gen_ai.choice", {})
    outputs = [
        _last(_messages(attrs.get("gen_ai.output.messages")), ("assistant",)),
        _message_text(_messages(choice.get("message"))[0]) if choice.get("message") else _text(choice.get("content")),
        _last(indexed.get("gen_ai.completion", []), ("assistant",)),
        _text(attrs.get("gen_ai.completion")) if isinstance(attrs.get("gen_ai.completion"), str) else None,
        _last(indexed.get("llm.output_messages", []), ("assistant",)),
        _text(attrs.get("output.value")),
    ]
    return next((t for t in inputs if t), ""), next((t for t in outputs if t), "")


def _first(attrs: Mapping[str, Any], *names: str) -> Any:
    return next((attrs[n] for n in names if attrs.get(n) not in (None, "")), None)


def _tokens(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def span_events(
    span: trace_pb2.Span, resource: Mapping[str, Any], scope: str, settings: MappingSettings
) -> list[dict[str, Any]]:
    """The events of one span: its ``span`` event, then its ``generation`` when it is a GenAI span. Not validated
    (the caller validates each, and dead-letters what fails)."""
    attrs = attributes(span.attributes)
    trace, span_id = span.trace_id.hex(), span.span_id.hex()
    model = _first(attrs, "gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
    session = _first(attrs, "session.id", "gen_ai.conversation.id") or _first(
        resource, "session.id", "gen_ai.conversation.id"
    )
    base = {
        "ts": rfc3339(span.end_time_unix_nano), "session_id": str(session or trace),
        "app": str(resource.get("service.name") or "unknown_service"),
    }  # fmt: skip
    kind = attrs.get("openinference.span.kind")
    component = attrs.get(settings.component_attribute) or ("llm" if model else None) or (
        str(kind).lower() if kind else None
    ) or scope or "unknown"  # fmt: skip
    status = STATUS.get(span.status.code, "unset")
    out = [{
        "type": "span", "event_id": f"otlp-{trace}-{span_id}", **base, "trace_id": trace, "span_id": span_id,
        "parent_span_id": span.parent_span_id.hex() or None, "component": str(component), "name": span.name,
        "start": rfc3339(span.start_time_unix_nano), "end": rfc3339(span.end_time_unix_nano), "status": status,
    }]  # fmt: skip
    if not model:
        return out
    prompt, completion = prompt_and_completion(span, attrs)
    tokens_in = _tokens(
        _first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
    )
    tokens_out = _tokens(
        _first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
    )
    price = settings.prices.get(str(model))
    cost = None
    if price is not None and tokens_in is not None and tokens_out is not None:
        cost = round((tokens_in * price[0] + tokens_out * price[1]) / 1e6, 10)
    generation = {
        "type": "generation", "event_id": f"otlp-gen-{trace}-{span_id}", **base, "generation_id": f"{trace}-{span_id}",
        "route": str(_first(attrs, settings.route_attribute, "gen_ai.operation.name") or span.name or "unknown"),
        "model": str(model),
        "prompt_version": str(_first(attrs, settings.prompt_version_attribute) or "unversioned"),
        "input": prompt, "output": completion, "trace_id": trace,
        "latency_ms": max(0.0, (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6),
        "tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost,
        "error": (span.status.message or "error") if status == "error" else None,
        "index_version": _first(attrs, settings.index_version_attribute),
    }  # fmt: skip
    out.append({k: v for k, v in generation.items() if v is not None})
    return out
