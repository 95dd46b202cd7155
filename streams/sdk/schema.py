"""The evalstream event contract: one module used by the SDK, the worker and the API.

Events are JSON objects on the topic ``llm.events`` (message key = ``session_id``). Every event has
``type``, ``event_id``, ``ts`` (RFC 3339 with an offset), ``session_id`` and ``app``; the rest depends on
``type``. Unknown extra fields are kept, never rejected.

Example::

    >>> ev = parse_event(b'{"type": "feedback", "event_id": "e1", "ts": "2026-11-25T10:00:00Z",'
    ...                  b' "session_id": "s1", "app": "chat", "generation_id": "g1", "thumbs": "up",'
    ...                  b' "client": "ios"}')
    >>> ev.thumbs, ev.model_extra
    ('up', {'client': 'ios'})
    >>> parse_event(b'{"type": "feedback"}')
    Traceback (most recent call last):
    ...
    streams.sdk.schema.EventValidationError: event_id: Field required; ts: Field required; ...
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_serializer,
    model_validator,
)

NonEmpty = Annotated[str, Field(min_length=1, max_length=512)]
MAX_TAGS = 32
MAX_PASSAGES = 32  # a generation's context: at most this many passages,
MAX_PASSAGE_CHARS = 20_000  # of at most this many characters each
TagName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
TagValue = Annotated[str, Field(max_length=256)]
EVENT_TYPES = ("generation", "feedback", "edit", "regenerate", "span", "judgement")


class BaseEvent(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=False)

    type: str
    event_id: NonEmpty = Field(description="Unique id of this event (a replay with the same id is the same event).")
    ts: AwareDatetime = Field(description="When it happened, RFC 3339 with an offset, e.g. 2026-11-25T10:00:00Z.")
    session_id: NonEmpty = Field(description="User session; also the Kafka message key.")
    app: NonEmpty = Field(description="The application that emitted the event.")

    @field_serializer("ts", "start", "end", check_fields=False)
    def _rfc3339(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    @property
    def ts_utc(self) -> datetime:
        """``ts`` as a naive UTC datetime (how it is stored in Parquet)."""
        return self.ts.astimezone(UTC).replace(tzinfo=None)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class Passage(BaseModel):
    """One retrieved passage of a generation's ``context``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: Annotated[str, Field(max_length=MAX_PASSAGE_CHARS)]
    source: Annotated[str, Field(max_length=1024)] | None = None
    id: Annotated[str, Field(max_length=512)] | None = None


def _passages(value: Any) -> Any:
    """Plain strings are passages too."""
    if isinstance(value, list):
        return [{"text": v} if isinstance(v, str) else v for v in value]
    return value


class GenerationEvent(BaseEvent):
    """An LLM call: what went in, what came out, and its cost."""

    type: Literal["generation"] = "generation"
    generation_id: NonEmpty
    route: NonEmpty = Field(description="The feature or endpoint, e.g. 'summarize'.")
    model: NonEmpty
    prompt_version: NonEmpty
    input: str
    output: str
    latency_ms: float | None = Field(default=None, ge=0)
    tokens_in: int | None = Field(default=None, ge=0)
    tokens_out: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    error: str | None = Field(default=None, description="Error message when the call failed.")
    trace_id: str | None = Field(default=None, description="The trace whose spans this generation belongs to.")
    index_version: NonEmpty | None = Field(
        default=None, description="Version of the retrieval index or knowledge base the answer drew on."
    )
    tags: Annotated[dict[TagName, TagValue], Field(max_length=MAX_TAGS)] | None = Field(
        default=None,
        description=f"Free labels (deployment, region, experiment arm, data snapshot…): at most {MAX_TAGS}, names of "
        "letters, digits, '_', '.', '-' (1-64), string values of at most 256 characters.",
    )
    context: Annotated[list[Passage], Field(max_length=MAX_PASSAGES), BeforeValidator(_passages)] | None = Field(
        default=None,
        description=f"The passages retrieved for this answer (RAG): strings, or objects with `text` and optional "
        f"`source` and `id`; at most {MAX_PASSAGES}, each at most {MAX_PASSAGE_CHARS:,} characters.",
    )


class FeedbackEvent(BaseEvent):
    """A user's rating of a generation: thumbs and/or a score in [0, 1]."""

    type: Literal["feedback"] = "feedback"
    generation_id: NonEmpty
    thumbs: Literal["up", "down"] | None = None
    score: float | None = Field(default=None, ge=0, le=1)
    comment: str | None = None

    @model_validator(mode="after")
    def _needs_a_rating(self) -> FeedbackEvent:
        if self.thumbs is None and self.score is None:
            raise ValueError("feedback needs `thumbs` ('up' or 'down') and/or `score` (0..1)")
        return self


class EditEvent(BaseEvent):
    """The text the user kept after editing a generation's output."""

    type: Literal["edit"] = "edit"
    generation_id: NonEmpty
    edited_output: str


class RegenerateEvent(BaseEvent):
    """The user asked to redo a generation."""

    type: Literal["regenerate"] = "regenerate"
    generation_id: NonEmpty


class SpanEvent(BaseEvent):
    """One step of a multi-step pipeline (retrieval, tool call, LLM call...)."""

    type: Literal["span"] = "span"
    trace_id: NonEmpty
    span_id: NonEmpty
    parent_span_id: str | None = None
    component: NonEmpty
    name: NonEmpty
    start: AwareDatetime
    end: AwareDatetime
    status: NonEmpty

    @model_validator(mode="after")
    def _ordered(self) -> SpanEvent:
        if self.end < self.start:
            raise ValueError("span `end` is before `start`")
        return self


class JudgementEvent(BaseEvent):
    """An LLM judge's verdict on a generation (``evalstream judge`` sends them): a score in [0, 1] (and the label it
    came from, if the judge answers in labels) with its reason; or, when the answer could not be read, the raw
    answer and ``parsed`` false."""

    type: Literal["judgement"] = "judgement"
    generation_id: NonEmpty
    judge: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]
    judge_version: NonEmpty
    score: float | None = Field(default=None, ge=0, le=1)
    label: str | None = None
    reason: str | None = None
    raw_answer: str | None = Field(default=None, description="The judge's reply, when it could not be parsed.")
    parsed: bool = True
    tokens_in: int | None = Field(default=None, ge=0)
    tokens_out: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0, description="What the judge's request cost (0 from cache).")

    @model_validator(mode="after")
    def _score_when_parsed(self) -> JudgementEvent:
        if self.parsed and self.score is None:
            raise ValueError("a parsed judgement needs `score` (0..1)")
        return self


Event = Annotated[
    GenerationEvent | FeedbackEvent | EditEvent | RegenerateEvent | SpanEvent | JudgementEvent,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class EventValidationError(ValueError):
    """Bad input: not JSON, not an object, or not a valid event. ``reason`` is short and human-readable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = err["loc"][1:]  # the first element is the union tag (the event type)
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{'.'.join(map(str, loc))}: {msg}" if loc else msg)
    return "; ".join(parts)


def validate_event(data: Any) -> Event:
    """Validate a decoded JSON value (or an event model) into an event model."""
    if isinstance(data, BaseEvent):
        return data  # type: ignore[return-value]
    if not isinstance(data, dict):
        raise EventValidationError(f"event must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind not in EVENT_TYPES:
        raise EventValidationError(f"type: must be one of {', '.join(EVENT_TYPES)} (got {kind!r})")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise EventValidationError(_describe(exc)) from None


def parse_event(raw: bytes | str | None) -> Event:
    """Decode and validate one message value; raises :class:`EventValidationError` with the reason."""
    if raw is None:
        raise EventValidationError("empty message (null value)")
    if not raw:
        raise EventValidationError("empty message (no bytes)")
    decoded = isinstance(raw, bytes)
    if isinstance(raw, bytes):
        # JSON between systems is UTF-8 (RFC 8259; a leading BOM is ignored): json.loads would also guess UTF-16
        # or UTF-32 from the first bytes, and accept encoded surrogates
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise EventValidationError(f"not UTF-8: {exc}") from None
    try:
        data = json.loads(raw)
        if _may_hold_lone_surrogates(raw, decoded):
            data = _without_lone_surrogates(data)
        return validate_event(data)
    except EventValidationError:
        raise
    except ValueError as exc:
        raise EventValidationError(f"malformed JSON: {exc}") from None
    except RecursionError:  # no event nests more than a few levels; JSON nested ~1,000 deep exhausts the stack
        raise EventValidationError("malformed JSON: nested too deeply") from None


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _may_hold_lone_surrogates(text: str, decoded: bool) -> bool:
    """Whether decoding ``text`` may have produced a lone surrogate: valid JSON (a ``\\udXXX`` escape without its
    pair, as clients that cut strings in UTF-16 code units send), but no Unicode text that Parquet can store.

    Text ``decoded`` from UTF-8 holds no surrogate characters itself: only its escapes are looked at (the worker's
    path, once per message); a ``str`` given by a caller may hold them as characters too.
    """
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        return True
    return not decoded and not text.isascii() and _SURROGATE.search(text) is not None


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    return value


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one event, generated from the models (published as ``streams/sdk/event.schema.json``)."""
    schema = _ADAPTER.json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "evalstream LLM event"
    return schema
