"""OTLP/HTTP request bodies → ``ExportTraceServiceRequest``, as the OTLP specification describes them.

- ``Content-Type: application/x-protobuf``: the binary message; ``application/json``: the JSON mapping of
  protobuf, with OTLP's exceptions: trace and span ids are hex strings (not base64), enum values may be numbers.
  Anything else: :class:`UnsupportedMediaType` (HTTP 415).
- ``Content-Encoding: gzip`` is decompressed, at most ``max_bytes`` of it (:class:`TooLarge`, HTTP 413); so is a
  plain body over ``max_bytes``.
- A body that does not parse: :class:`BadRequest` (HTTP 400, not retryable).

Example::

    >>> req = decode(b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c",'
    ...              b' "spanId": "eee19b7ec3c1b174", "name": "retrieve"}]}]}]}', "application/json", None)
    >>> span = req.resource_spans[0].scope_spans[0].spans[0]
    >>> span.trace_id.hex(), span.name
    ('5b8efff798038103d269b633813fc60c', 'retrieve')
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PROTOBUF, JSON = "application/x-protobuf", "application/json"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class BadRequest(ValueError):
    """The body cannot be read as an OTLP traces request (HTTP 400)."""


class TooLarge(ValueError):
    """The body, or what it decompresses to, is over the limit (HTTP 413)."""


class UnsupportedMediaType(ValueError):
    """Neither protobuf nor JSON (HTTP 415)."""


def media_type(content_type: str | None) -> str:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in (PROTOBUF, JSON):
        raise UnsupportedMediaType(f"Content-Type must be {PROTOBUF} or {JSON}, got {content_type!r}")
    return kind


def gunzip(body: bytes, max_bytes: int) -> bytes:
    """Decompress a gzip body, refusing to produce more than ``max_bytes`` (a small bomb stays small)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"gzip: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise TooLarge(f"the request decompresses to more than {max_bytes:,} bytes")
    if not inflater.eof:
        raise BadRequest("gzip: truncated body")
    return out


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP JSON carries ids as hex; protobuf's JSON parser expects base64 for bytes fields."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise BadRequest(f"{key}: not a hex string: {value[:40]!r}") from None
            out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def decode(
    body: bytes, content_type: str | None, content_encoding: str | None, max_bytes: int = 16 << 20
) -> ExportTraceServiceRequest:
    kind = media_type(content_type)
    encoding = (content_encoding or "").strip().lower()
    if encoding == "gzip":
        body = gunzip(body, max_bytes)
    elif encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"Content-Encoding must be gzip or none, got {content_encoding!r}")
    if len(body) > max_bytes:
        raise TooLarge(f"the request is more than {max_bytes:,} bytes")
    request = ExportTraceServiceRequest()
    try:
        if kind == PROTOBUF:
            request.ParseFromString(body)
        else:
            json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), request, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, ValueError, binascii.Error, RecursionError) as exc:
        if isinstance(exc, BadRequest):
            raise
        raise BadRequest(f"not an OTLP traces request ({'protobuf' if kind == PROTOBUF else 'JSON'}): {exc}") from None
    return request
