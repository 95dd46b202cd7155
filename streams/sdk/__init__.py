"""The SDK an application imports: the event contract and a Kafka publisher, nothing of the worker's.

Importing it pulls in pydantic and confluent-kafka only (no Faust, torch, onnxruntime or Numba), so an app can
depend on the SDK alone.

Example::

    >>> from streams.sdk import Publisher, parse_event
    >>> parse_event(b'{"type": "regenerate", "event_id": "e", "ts": "2026-11-25T10:00:00Z", "session_id": "s",'
    ...             b' "app": "chat", "generation_id": "g"}').type
    'regenerate'
"""

from __future__ import annotations

from streams.sdk.publisher import Publisher, PublishError
from streams.sdk.schema import (
    EVENT_TYPES,
    EditEvent,
    Event,
    EventValidationError,
    FeedbackEvent,
    GenerationEvent,
    RegenerateEvent,
    SpanEvent,
    json_schema,
    parse_event,
    validate_event,
)

__all__ = [
    "EVENT_TYPES",
    "EditEvent",
    "Event",
    "EventValidationError",
    "FeedbackEvent",
    "GenerationEvent",
    "PublishError",
    "Publisher",
    "RegenerateEvent",
    "SpanEvent",
    "json_schema",
    "parse_event",
    "validate_event",
]
