from __future__ import annotations

import json
from pathlib import Path

import pytest

import streams.sdk
from streams.sdk.schema import (
    EditEvent,
    EventValidationError,
    FeedbackEvent,
    GenerationEvent,
    SpanEvent,
    json_schema,
    parse_event,
    validate_event,
)

BASE = {"event_id": "e1", "ts": "2026-11-25T10:00:00+01:00", "session_id": "s1", "app": "chat"}
GEN = {
    **BASE,
    "type": "generation",
    "generation_id": "g1",
    "route": "answer",
    "model": "m",
    "prompt_version": "v1",
    "input": "hi",
    "output": "hello",
}


def test_every_type_parses_to_its_model() -> None:
    assert isinstance(parse_event(json.dumps(GEN)), GenerationEvent)
    assert isinstance(validate_event({**BASE, "type": "edit", "generation_id": "g", "edited_output": ""}), EditEvent)
    fb = validate_event({**BASE, "type": "feedback", "generation_id": "g", "score": 0.25})
    assert isinstance(fb, FeedbackEvent) and fb.score == 0.25 and fb.thumbs is None
    span = validate_event(
        {
            **BASE,
            "type": "span",
            "trace_id": "t",
            "span_id": "s",
            "parent_span_id": None,
            "component": "llm",
            "name": "call",
            "start": "2026-11-25T10:00:00Z",
            "end": "2026-11-25T10:00:01Z",
            "status": "ok",
        }
    )
    assert isinstance(span, SpanEvent)


def test_timestamps_normalise_to_utc() -> None:
    ev = parse_event(json.dumps(GEN))
    assert ev.ts_utc.isoformat() == "2026-11-25T09:00:00"
    assert json.loads(ev.to_json_bytes())["ts"] == "2026-11-25T09:00:00Z"


def test_unknown_fields_are_kept_through_a_round_trip() -> None:
    ev = parse_event(json.dumps({**GEN, "tenant": "acme", "labels": ["a", "b"]}))
    assert ev.model_extra == {"tenant": "acme", "labels": ["a", "b"]}
    again = parse_event(ev.to_json_bytes())
    assert again.model_extra == ev.model_extra and again == ev


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe", "not UTF-8: 'utf-8' codec can't decode byte 0xff in position 0"),
        ('{"a": "é"}'.encode("utf-16"), "not UTF-8"),  # JSON in UTF-16 with a BOM: json.loads alone accepts it
        (b'{"type": "\xed\xa0\x80"}', "not UTF-8"),  # an encoded surrogate
        (b"", "empty message (no bytes)"),
        (None, "empty message (null value)"),
        (b"42", "must be a JSON object"),
        (json.dumps({**GEN, "type": "click"}).encode(), "type: must be one of"),
        (json.dumps({k: v for k, v in GEN.items() if k != "output"}).encode(), "output: Field required"),
        (json.dumps({**GEN, "ts": "2026-11-25T10:00:00"}).encode(), "ts: Input should have timezone info"),
        (
            json.dumps({**GEN, "latency_ms": -1}).encode(),
            "latency_ms: Input should be greater than or equal to 0",
        ),
        (json.dumps({**GEN, "event_id": ""}).encode(), "event_id: String should have at least 1 character"),
        (json.dumps({**BASE, "type": "feedback", "generation_id": "g"}).encode(), "feedback needs `thumbs`"),
        (json.dumps({**BASE, "type": "feedback", "generation_id": "g", "thumbs": "meh"}).encode(), "thumbs:"),
        (json.dumps({**BASE, "type": "feedback", "generation_id": "g", "score": 2}).encode(), "score:"),
        (
            json.dumps(
                {
                    **BASE,
                    "type": "span",
                    "trace_id": "t",
                    "span_id": "s",
                    "component": "c",
                    "name": "n",
                    "start": "2026-11-25T10:00:01Z",
                    "end": "2026-11-25T10:00:00Z",
                    "status": "ok",
                }
            ).encode(),
            "span `end` is before `start`",
        ),
    ],
)
def test_bad_input_gets_a_clear_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(raw)
    assert reason in info.value.reason


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    assert parse_event(b"\xef\xbb\xbf" + json.dumps(GEN).encode()).event_id == GEN["event_id"]


def test_lone_surrogates_become_replacement_characters_everywhere() -> None:
    """A lone surrogate escape is valid JSON but no Unicode text Parquet can store: each becomes one U+FFFD, in
    known fields, unknown fields and keys alike; a proper surrogate pair stays the character it encodes."""
    raw = json.dumps({**GEN, "output": "cut \ud83d here \ud83d\ude00", "note": ["x\udc00"], "k\udfff": 1})
    assert "\\ud83d" in raw  # json.dumps escaped them: this is what a client sends
    for message in (raw, raw.encode()):
        ev = parse_event(message)
        assert ev.output == "cut \ufffd here \U0001f600"
        assert ev.model_extra == {"note": ["x\ufffd"], "k\ufffd": 1}
        assert ev.to_json_bytes().decode("utf-8")  # storable: valid UTF-8 all the way
    unescaped = parse_event(json.dumps({**GEN, "output": "raw \udc80"}, ensure_ascii=False))
    assert unescaped.output == "raw \ufffd"


def test_published_json_schema_is_generated_from_the_models() -> None:
    published = Path(streams.sdk.__file__).with_name("event.schema.json")
    assert json.loads(published.read_text()) == json_schema(), "run: evalstream schema > streams/sdk/event.schema.json"
    assert set(json_schema()["discriminator"]["mapping"]) == {
        "generation",
        "feedback",
        "edit",
        "regenerate",
        "span",
        "judgement",
    }


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"tags": {"region": 3}}, "tags.region: Input should be a valid string"),
        ({"tags": {"bad key": "x"}}, "tags.bad key.[key]: String should match pattern '^[A-Za-z0-9_.\\-]{1,64}$'"),
        ({"tags": {f"t{i}": "x" for i in range(33)}}, "tags: Dictionary should have at most 32 items after validation"),
        ({"tags": ["a"]}, "tags: Input should be a valid dictionary"),
        ({"index_version": ""}, "index_version: String should have at least 1 character"),
        ({"context": ["p"] * 33}, "context: List should have at most 32 items after validation, not 33"),
        ({"context": [{"text": "x" * 20_001}]}, "context.0.text: String should have at most 20000 characters"),
        ({"context": [{"txt": "a"}]}, "context.0.text: Field required; context.0.txt: Extra inputs are not permitted"),
        ({"context": [7]}, "context.0: Input should be a valid dictionary or instance of Passage"),
        ({"context": "one passage"}, "context: Input should be a valid list"),
    ],
)
def test_new_generation_fields_out_of_bounds_are_refused_with_the_reason(extra: dict, reason: str) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(json.dumps({**GEN, **extra}))
    assert info.value.reason.startswith(reason), info.value.reason


def test_new_generation_fields_within_bounds() -> None:
    ev = parse_event(json.dumps({**GEN, "index_version": "kb-7", "tags": {"region": "eu"},
                                 "context": ["plain", {"text": "t", "source": "kb://1", "id": "p1"}]}))  # fmt: skip
    assert isinstance(ev, GenerationEvent)
    assert ev.index_version == "kb-7" and ev.tags == {"region": "eu"}
    assert [(p.text, p.source, p.id) for p in ev.context or []] == [("plain", None, None), ("t", "kb://1", "p1")]
    again = parse_event(ev.to_json_bytes())
    assert again == ev


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"type": "feedback", "tags": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
)
def test_json_nested_too_deeply_is_bad_input_with_a_reason(raw: bytes) -> None:
    """Python's JSON decoder recurses; a message nested past the stack's depth is invalid input, not a crash."""
    with pytest.raises(EventValidationError, match="malformed JSON: nested too deeply"):
        parse_event(raw)
