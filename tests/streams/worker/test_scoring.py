from __future__ import annotations

import dataclasses
from datetime import datetime

from streams.sdk.schema import validate_event
from streams.worker.scoring import GenerationRef, scores_for

BASE = {"ts": "2026-11-25T10:00:00Z", "session_id": "s", "app": "chat"}
GEN = validate_event(
    {
        **BASE,
        "event_id": "e0",
        "type": "generation",
        "generation_id": "g1",
        "route": "answer",
        "model": "m1",
        "prompt_version": "v2",
        "input": "q",
        "output": "hello world",
        "latency_ms": 250.5,
        "tokens_in": 10,
        "tokens_out": 3,
        "cost_usd": 0.001,
    }
)
REF = GenerationRef.of(GEN)


def values(scores):  # type: ignore[no-untyped-def]
    return {s.metric: s.value for s in scores}


def test_generation_scores_cost_and_latency() -> None:
    scores = scores_for(GEN, None)
    assert values(scores) == {
        "latency_ms": 250.5,
        "tokens_in": 10,
        "tokens_out": 3,
        "cost_usd": 0.001,
        "error": 0,
        "pii_input": 0,
        "pii_output": 0,
    }
    s = scores[0]
    assert (s.event_id, s.generation_id, s.app, s.route, s.model, s.prompt_version) == (
        "e0",
        "g1",
        "chat",
        "answer",
        "m1",
        "v2",
    )
    assert s.ts == datetime(2026, 11, 25, 10, 0)


def minimal_generation(**fields: str):  # type: ignore[no-untyped-def]
    """A generation with only the required fields, plus ``fields``."""
    required = {"event_id": "e", "type": "generation", "generation_id": "g", "route": "r", "model": "m",
                "prompt_version": "v"}  # fmt: skip
    return validate_event({**BASE, **required, **fields})


def test_failed_generation_without_optional_fields() -> None:
    gen = minimal_generation(input="", output="", error="timeout")
    assert values(scores_for(gen, None)) == {"error": 1.0, "pii_input": 0.0, "pii_output": 0.0}


def test_generation_pii_counts_per_side_and_type() -> None:
    gen = minimal_generation(input="I am jane@example.com, ssn 123-45-6789", output="Emailing jane@example.com now")
    got = values(scores_for(gen, None))
    assert {k: v for k, v in got.items() if k.startswith("pii")} == {
        "pii_input": 2.0, "pii_input_email": 1.0, "pii_input_ssn": 1.0, "pii_output": 1.0, "pii_output_email": 1.0,
    }  # fmt: skip


def test_edit_scores_need_the_generation() -> None:
    edit = validate_event(
        {**BASE, "event_id": "e1", "type": "edit", "generation_id": "g1", "edited_output": "hello, world!"}
    )
    assert values(scores_for(edit, REF)) == {
        "edit_distance": 2.0,
        "edit_ratio": 2 / 13,
        "edit_word_distance": 2.0,  # "hello world" -> "hello, world!": both tokens changed
        "edit_accepted": 0.0,
    }
    same = validate_event(
        {**BASE, "event_id": "e9", "type": "edit", "generation_id": "g1", "edited_output": "hello world"}
    )
    assert values(scores_for(same, REF))["edit_accepted"] == 1.0
    assert scores_for(edit, None) == []
    assert {s.model for s in scores_for(edit, REF)} == {"m1"}


def test_feedback_scores_with_and_without_generation() -> None:
    fb = validate_event(
        {**BASE, "event_id": "e2", "type": "feedback", "generation_id": "g1", "thumbs": "down", "score": 0.2}
    )
    assert values(scores_for(fb, REF)) == {"thumbs_up": 0.0, "feedback_score": 0.2}
    orphan = scores_for(fb, None)
    assert values(orphan) == {"thumbs_up": 0.0, "feedback_score": 0.2}
    assert {(s.app, s.route, s.model) for s in orphan} == {("chat", None, None)}
    up = validate_event({**BASE, "event_id": "e3", "type": "feedback", "generation_id": "g1", "thumbs": "up"})
    assert values(scores_for(up, REF)) == {"thumbs_up": 1.0}


def test_regenerate_marks_the_original_generation() -> None:
    rg = validate_event({**BASE, "event_id": "e4", "type": "regenerate", "generation_id": "g1"})
    [score] = scores_for(rg, REF)
    assert (score.metric, score.value, score.generation_id, score.event_id, score.route) == (
        "regenerated",
        1.0,
        "g1",
        "e4",
        "answer",
    )


def test_generation_ref_round_trips_every_field() -> None:
    """to_dict is written out by hand (speed): it must still hold every field, as asdict would."""
    ref = GenerationRef("g1", "app", "route", "model", "v2", "the output")
    assert ref.to_dict() == dataclasses.asdict(ref)
    assert GenerationRef.from_dict(ref.to_dict()) == ref
