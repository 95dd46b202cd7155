"""Turn validated events (joined with their generation) into scores in long format.

One :class:`Score` per metric value (Langfuse-style), so a new metric never changes the storage schema.
The join state for a generation is a :class:`GenerationRef`: the few fields a later edit, feedback or
regenerate needs, small enough to keep in a Faust table.

Example::

    >>> from streams.sdk.schema import parse_event
    >>> gen = parse_event(b'{"type":"generation","event_id":"e1","ts":"2026-11-25T10:00:00Z","session_id":"s",'
    ...     b'"app":"chat","generation_id":"g1","route":"answer","model":"m","prompt_version":"v1",'
    ...     b'"input":"hi","output":"kitten","latency_ms":120}')
    >>> [(s.metric, s.value) for s in scores_for(gen, None)]
    [('latency_ms', 120.0), ('error', 0.0), ('pii_input', 0.0), ('pii_output', 0.0)]
    >>> edit = parse_event(b'{"type":"edit","event_id":"e2","ts":"2026-11-25T10:01:00Z","session_id":"s",'
    ...     b'"app":"chat","generation_id":"g1","edited_output":"sitting"}')
    >>> [(s.metric, round(s.value, 3)) for s in scores_for(edit, GenerationRef.of(gen))]
    [('edit_distance', 3.0), ('edit_ratio', 0.429), ('edit_word_distance', 1.0), ('edit_accepted', 0.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from metrics.edit import normalized
from metrics.levenshtein import distance_pairs, word_distance_pairs
from metrics.pii import pii_counts
from streams.sdk.schema import (
    EditEvent,
    Event,
    FeedbackEvent,
    GenerationEvent,
    JudgementEvent,
    RegenerateEvent,
    SpanEvent,
)


@dataclass(frozen=True, slots=True)
class GenerationRef:
    """What the join keeps per generation (serialized as a dict in the Faust table)."""

    generation_id: str
    app: str
    route: str
    model: str
    prompt_version: str
    output: str
    index_version: str | None = None  # absent from entries stored before it existed

    @classmethod
    def of(cls, gen: GenerationEvent) -> GenerationRef:
        return cls(gen.generation_id, gen.app, gen.route, gen.model, gen.prompt_version, gen.output, gen.index_version)

    def to_dict(self) -> dict[str, str | None]:
        # not dataclasses.asdict, which deep-copies each field: this runs once per generation
        return {
            "generation_id": self.generation_id,
            "app": self.app,
            "route": self.route,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "output": self.output,
            "index_version": self.index_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRef:
        return cls(**data)


class Score(NamedTuple):
    """One metric value, attributed to a generation and to the event that produced it.

    A named tuple, not a frozen dataclass: a generation makes ~13 of them, and a frozen dataclass sets each
    field through ``object.__setattr__``, several times slower.
    """

    event_id: str
    generation_id: str | None
    ts: datetime  # naive UTC: the time of the event that produced the value
    app: str
    route: str | None
    model: str | None
    prompt_version: str | None
    metric: str
    value: float
    index_version: str | None = None
    component: str | None = None  # span scores: the span's component


def scores_of(event: Event, ref: GenerationRef | None, values: dict[str, float | None]) -> list[Score]:
    gid = getattr(event, "generation_id", None)
    event_id, ts, app = event.event_id, event.ts_utc, event.app  # once, not per metric
    route, model, version, index = (
        (ref.route, ref.model, ref.prompt_version, ref.index_version) if ref else (None, None, None, None)
    )
    return [
        Score(event_id, gid, ts, app, route, model, version, metric, float(value), index)
        for metric, value in values.items()
        if value is not None
    ]


OK_STATUSES = frozenset({"ok", "unset", "success", "succeeded", "status_code_ok", "status_code_unset"})


def span_scores(span: SpanEvent, ref: GenerationRef | None) -> list[Score]:
    """``span_duration_ms`` and ``span_error`` (1 unless the status is ok, unset or success, in any case) of one
    span, labelled with its component and, when known, its trace's generation (id, route, model, versions).

    >>> from streams.sdk.schema import parse_event
    >>> span = parse_event(b'{"type":"span","event_id":"s1","ts":"2026-11-25T10:00:01Z","session_id":"s","app":"chat",'
    ...     b'"trace_id":"t","span_id":"a","component":"retriever","name":"search","status":"TIMEOUT",'
    ...     b'"start":"2026-11-25T10:00:00Z","end":"2026-11-25T10:00:00.250Z"}')
    >>> [(s.metric, s.value, s.component, s.generation_id) for s in span_scores(span, None)]
    [('span_duration_ms', 250.0, 'retriever', None), ('span_error', 1.0, 'retriever', None)]
    """
    duration = (span.end - span.start).total_seconds() * 1000.0
    return span_rows(span.event_id, span.ts_utc, span.app, span.component, duration, span_error(span.status), ref)


def span_error(status: str) -> float:
    return 0.0 if status.strip().lower() in OK_STATUSES else 1.0


def span_rows(
    event_id: str, ts: datetime, app: str, component: str, duration_ms: float, error: float, ref: GenerationRef | None
) -> list[Score]:
    """A span's two scores, labelled with ``ref`` (its trace's generation) when known."""
    gid, route, model, version, index = (
        (ref.generation_id, ref.route, ref.model, ref.prompt_version, ref.index_version)
        if ref
        else (None, None, None, None, None)
    )
    return [
        Score(event_id, gid, ts, app, route, model, version, metric, float(value), index, component)
        for metric, value in (("span_duration_ms", duration_ms), ("span_error", error))
    ]


def scores_for(event: Event, ref: GenerationRef | None) -> list[Score]:
    """Scores produced by one event; ``ref`` is the joined generation (None when unknown or expired).

    - generation: ``latency_ms``, ``tokens_in``, ``tokens_out``, ``cost_usd`` (when given) and ``error`` (1/0).
    - edit: see :func:`edit_scores`, against the generation's output (nothing without it).
    - feedback: ``thumbs_up`` (1/0) and/or ``feedback_score``; route/model are null when the generation is unknown.
    - regenerate: ``regenerated`` = 1 on the original generation.
    - (a generation that repeats an earlier input also gives ``refreshed`` = 1 on the earlier one; the worker
      keeps that state, see :mod:`streams.worker.refreshes`.)
    - judgement: ``judge_<name>`` (its score), or ``judge_<name>_unparsed`` = 1 when the judge's answer could not
      be read; labelled with the judged generation.
    - span: see :func:`span_scores` (the worker joins it to its trace's generation first: streams.worker.traces).
    """
    if isinstance(event, GenerationEvent):
        return scores_of(event, ref or GenerationRef.of(event), {
            "latency_ms": event.latency_ms,
            "tokens_in": event.tokens_in,
            "tokens_out": event.tokens_out,
            "cost_usd": event.cost_usd,
            "error": 1.0 if event.error else 0.0,
            **pii_values(event),
        })  # fmt: skip
    if isinstance(event, EditEvent):
        return edit_scores([(event, ref)])[0] if ref is not None else []
    if isinstance(event, FeedbackEvent):
        thumbs = None if event.thumbs is None else float(event.thumbs == "up")
        return scores_of(event, ref, {"thumbs_up": thumbs, "feedback_score": event.score})
    if isinstance(event, RegenerateEvent):
        return scores_of(event, ref, {"regenerated": 1.0})
    if isinstance(event, SpanEvent):
        return span_scores(event, ref)
    if isinstance(event, JudgementEvent):
        if event.parsed:
            return scores_of(event, ref, {f"judge_{event.judge}": event.score})
        return scores_of(event, ref, {f"judge_{event.judge}_unparsed": 1.0})
    return []


def edit_scores(edits: list[tuple[EditEvent, GenerationRef]]) -> list[list[Score]]:
    """Scores of many edits at once (one batched Numba call per level), in the order given.

    ``edit_distance`` (characters), ``edit_ratio`` (distance / longer length), ``edit_word_distance``
    (whitespace tokens) and ``edit_accepted`` (1 when the user kept the output as is).
    """
    if not edits:
        return []
    originals = [ref.output for _, ref in edits]
    kept = [event.edited_output for event, _ in edits]
    chars = distance_pairs(originals, kept)
    words = word_distance_pairs(originals, kept)
    out = []
    for (event, ref), d, w in zip(edits, chars, words, strict=True):
        values: dict[str, float | None] = {
            "edit_distance": int(d),
            "edit_ratio": normalized(int(d), len(ref.output), len(event.edited_output)),
            "edit_word_distance": int(w),
            "edit_accepted": 1.0 if d == 0 else 0.0,
        }
        out.append(scores_of(event, ref, values))
    return out


def pii_values(event: GenerationEvent) -> dict[str, float | None]:
    """``pii_input`` / ``pii_output`` (total detections, always) and ``pii_<side>_<type>`` for each type found."""
    values: dict[str, float | None] = {}
    for side, text in (("input", event.input), ("output", event.output)):
        counts = pii_counts(text)
        values[f"pii_{side}"] = float(sum(counts.values()))
        values.update({f"pii_{side}_{kind}": float(n) for kind, n in counts.items()})
    return values
