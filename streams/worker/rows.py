"""The rows the worker writes: events, scores and dead letters, converted for the sinks' Arrow schemas.

Example::

    >>> from streams.sdk.schema import parse_event
    >>> ev = parse_event(b'{"type":"regenerate","event_id":"e","ts":"2026-11-25T10:00:00Z","session_id":"s",'
    ...                  b'"app":"a","generation_id":"g","ui":"button"}')
    >>> row = event_row(ev, "llm.events", 0, 42)
    >>> row["type"], row["generation_id"], row["extra"], row["_offset"]
    ('regenerate', 'g', '{"ui": "button"}', 42)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from metrics.pii import redact
from sinks.schemas import EVENTS_SCHEMA
from streams.sdk.schema import Event
from streams.worker.scoring import Score

_EVENT_COLUMNS = frozenset(EVENTS_SCHEMA.names) - {"extra", "_topic", "_partition", "_offset"}


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


TEXT_COLUMNS = ("input", "output", "edited_output", "comment", "reason", "raw_answer")
StoreText = Literal["full", "redacted", "none"]


def _store(text: str | None, store_text: StoreText) -> str | None:
    if text is None or store_text == "full":
        return text
    return redact(text) if store_text == "redacted" else None


def event_row(event: Event, topic: str, partition: int, offset: int, store_text: StoreText = "full") -> dict[str, Any]:
    """One ``events`` row; fields the type lacks are null, unknown fields go to ``extra`` as JSON.

    ``store_text``: ``full`` keeps the texts (input, output, context passages, edited output, comment and unknown
    fields),
    ``redacted`` replaces detected PII with labels such as ``[EMAIL]``, ``none`` stores no text at all.
    """
    known = {k: _naive_utc(v) for k, v in event.__dict__.items() if k in _EVENT_COLUMNS}
    for column in TEXT_COLUMNS:
        if column in known:
            known[column] = _store(known[column], store_text)
    if known.get("tags") is not None:
        known["tags"] = list(known["tags"].items())  # an Arrow map
    if known.get("context") is not None:  # retrieved passages are text: stored as the settings say
        known["context"] = [
            {"text": _store(p.text, store_text), "source": p.source, "id": p.id} for p in known["context"]
        ]
    extra = event.model_extra or None
    if extra and store_text != "full":
        extra = {"_redacted": True} if store_text == "none" else json.loads(redact(json.dumps(extra)))
    return {
        **known,
        "extra": json.dumps(extra, ensure_ascii=False, default=str) if extra else None,
        "_topic": topic,
        "_partition": partition,
        "_offset": offset,
    }


def score_row(score: Score) -> dict[str, Any]:
    # a dict literal, not Score._asdict(): this runs ~13 times per generation
    return {
        "event_id": score.event_id,
        "generation_id": score.generation_id,
        "ts": score.ts,
        "app": score.app,
        "route": score.route,
        "model": score.model,
        "prompt_version": score.prompt_version,
        "metric": score.metric,
        "value": score.value,
        "index_version": score.index_version,
        "component": score.component,
    }


def dlq_row(
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    store_text: StoreText = "full",
) -> dict[str, Any]:
    """One ``dlq`` row; with ``store_text`` other than ``full`` the original value is redacted or dropped."""
    if value is not None and store_text != "full":
        stored = _store(value.decode("utf-8", "replace"), store_text)
        value = stored.encode() if stored is not None else None
    return {
        "received_at": datetime.now(UTC).replace(tzinfo=None),
        "reason": reason,
        "_topic": topic,
        "_partition": partition,
        "_offset": offset,
        "key": key,
        "value": value,
    }
