"""The rows the worker writes: texts stored in full, redacted or not at all; every score field."""

from __future__ import annotations

from datetime import datetime

from sinks.schemas import SCORES_SCHEMA
from streams.sdk.schema import validate_event
from streams.worker.rows import dlq_row, event_row, score_row


def test_store_text_redacted_or_none_keeps_pii_out_of_rows() -> None:
    ev = validate_event(
        {
            "type": "generation",
            "event_id": "e",
            "ts": "2026-11-25T10:00:00Z",
            "session_id": "s",
            "app": "a",
            "generation_id": "g",
            "route": "r",
            "model": "m",
            "prompt_version": "v",
            "input": "I am jane@example.com",
            "output": "ok 123-45-6789",
            "note": "jane@example.com",
        }
    )
    full = event_row(ev, "t", 0, 1)
    assert full["input"] == "I am jane@example.com"
    red = event_row(ev, "t", 0, 1, "redacted")
    assert (red["input"], red["output"]) == ("I am [EMAIL]", "ok [SSN]")
    assert "jane" not in red["extra"]
    none = event_row(ev, "t", 0, 1, "none")
    assert none["input"] is None and none["output"] is None and "jane" not in none["extra"]
    assert none["model"] == "m"  # labels are not text
    assert (
        dlq_row("bad", "t", 0, 1, b"k", b'{"email": "jane@example.com"', "redacted")["value"] == b'{"email": "[EMAIL]"'
    )
    assert dlq_row("bad", "t", 0, 1, b"k", b"jane@example.com", "none")["value"] is None


def test_score_row_has_every_score_field() -> None:

    from streams.worker.scoring import Score

    score = Score("e", "g", datetime(2026, 11, 25), "app", "route", "model", "v1", "novelty", 0.25)
    assert score_row(score) == score._asdict()
    assert list(score_row(score)) == SCORES_SCHEMA.names
