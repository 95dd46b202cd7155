"""The trace join: a span's scores carry its trace's generation (id, route, model, versions), whichever came first.

State per ``trace_id``, in a Faust table co-partitioned with the source topic (spans and their generation share
the session key, so they share a partition): the trace's generation and the offset it came at, the spans that came
before it (``pending``), and, once the entry's time is up without a generation, the offset its pending spans were
released at.

- A generation, then spans: each span is scored at once, with the generation's labels.
- Spans, then their generation: the spans wait; the generation's message emits their scores, labelled.
- Spans whose generation does not come within ``ttl_s`` (the generation join's expiry, processing time): at the
  first batch after that, their scores are emitted with the span's own labels only (app, component).

Every emission is tied to one offset (the span's, the generation's, or the release's) and the state records it,
so a batch replayed after a crash emits the same rows at the same offsets again: exactly once in the files, since
a replay overwrites the files of the offsets it covers. A trace's later generations relabel the spans that follow
them; the spans that waited are labelled with the first.

Example (a plain dict standing in for the Faust table)::

    >>> from streams.sdk.schema import parse_event
    >>> from streams.worker.scoring import GenerationRef
    >>> traces = TraceJoin({}, ttl_s=60)
    >>> span = parse_event(b'{"type":"span","event_id":"s1","ts":"2026-11-25T10:00:01Z","session_id":"s",'
    ...     b'"app":"chat","trace_id":"t","span_id":"a","component":"retriever","name":"search","status":"ok",'
    ...     b'"start":"2026-11-25T10:00:00Z","end":"2026-11-25T10:00:00.250Z"}')
    >>> traces.on_span(span, partition=0, offset=5, now=1000.0)  # before its generation: it waits
    []
    >>> ref = GenerationRef("g1", "chat", "answer", "m", "v1", "text", "idx-3")
    >>> [(s.metric, s.generation_id, s.model, s.index_version) for s in traces.on_generation(ref, "t", 0, 6, 1001.0)]
    [('span_duration_ms', 'g1', 'm', 'idx-3'), ('span_error', 'g1', 'm', 'idx-3')]
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from streams.sdk.schema import SpanEvent
from streams.worker.join import ExpiringTable
from streams.worker.scoring import GenerationRef, Score, span_error, span_rows, span_scores

MAX_PENDING = 256  # spans waiting per trace; more are scored at once, without the generation's labels


def _stub(span: SpanEvent, offset: int) -> dict[str, Any]:
    """What a waiting span keeps: enough to score it later."""
    return {
        "o": offset, "id": span.event_id, "ts": span.ts_utc.isoformat(), "app": span.app, "c": span.component,
        "ms": (span.end - span.start).total_seconds() * 1000.0, "err": span_error(span.status),
    }  # fmt: skip


def _stub_scores(stub: dict[str, Any], ref: GenerationRef | None) -> list[Score]:
    ts = datetime.fromisoformat(stub["ts"])
    return span_rows(stub["id"], ts, stub["app"], stub["c"], stub["ms"], stub["err"], ref)


class TraceJoin(ExpiringTable):
    """Entries ``{"g": generation or None, "go": its offset, "s": waiting spans, "r": release offset}``."""

    def __init__(self, table: MutableMapping[str, Any], ttl_s: float) -> None:
        super().__init__(table, ttl_s)
        self.unjoined = 0  # spans scored without their generation's labels (released, or over MAX_PENDING)
        self._released: dict[int, list[str]] | None = None  # partition -> keys released before a restart

    def _entry(self, trace_id: str) -> dict[str, Any]:
        value = self.table.get(trace_id)
        return {k: v for k, v in value.items() if k not in ("p", "exp")} if value else {}

    def on_span(self, span: SpanEvent, partition: int, offset: int, now: float) -> list[Score]:
        """The span's scores now, or none yet (it waits for its generation; replayed: already accounted for)."""
        entry = self._entry(span.trace_id)
        pending = entry.get("s") or []
        if any(stub["o"] == offset for stub in pending):
            return []  # a replay: emitted (or to be emitted) at its generation's or its release's offset
        generation_offset, released = entry.get("go"), entry.get("r")
        if entry.get("g") is not None and generation_offset is not None and generation_offset < offset:
            return span_scores(span, GenerationRef.from_dict(entry["g"]))
        if released is not None and offset > released:
            self.unjoined += 1
            return span_scores(span, None)
        if len(pending) >= MAX_PENDING:
            self.unjoined += 1
            return span_scores(span, None)
        self.put(span.trace_id, {**entry, "s": [*pending, _stub(span, offset)]}, partition, now)
        return []

    def on_generation(self, ref: GenerationRef, trace_id: str, partition: int, offset: int, now: float) -> list[Score]:
        """Remember the trace's generation; the scores of the spans that waited for it (labelled), if any."""
        entry = self._entry(trace_id)
        first = entry.get("go")
        emit = []
        if entry.get("r") is None and (first is None or first == offset):
            emit = [s for stub in entry.get("s") or [] if stub["o"] < offset for s in _stub_scores(stub, ref)]
        self.put(trace_id, {**entry, "g": ref.to_dict(), "go": offset if first is None else first}, partition, now)
        return emit

    def expire_spans(self, partition: int, first_offset: int, last_offset: int, now: float) -> list[Score]:
        """Call once per batch and partition, after scoring (``last_offset``: the batch's last on it).

        Entries whose time is up: those with spans still waiting are released (their scores emitted now,
        unlabelled, tied to ``last_offset``) and kept one more ``ttl_s``; the rest are deleted. Entries released
        at an offset of this batch before a restart emit their spans again: this batch is their replay.
        """
        out = []
        for key in self._replayed(partition, first_offset, last_offset):
            out += [s for stub in self._entry(key).get("s") or [] for s in _stub_scores(stub, None)]
        for key, value in self.due(partition, now):
            pending = value.get("s") or []
            if value.get("g") is None and value.get("r") is None and pending:
                self.unjoined += len(pending)
                out += [s for stub in pending for s in _stub_scores(stub, None)]
                self.put(key, {**self._entry(key), "r": last_offset}, partition, now)
            else:
                self._delete(key, partition)
        return out

    def reset(self) -> None:
        super().reset()
        self._released = None

    def _replayed(self, partition: int, first_offset: int, last_offset: int) -> list[str]:
        """Keys released at an offset in ``[first_offset, last_offset]`` that this process did not release itself
        (found once per assignment in the restored table)."""
        if self._released is None:
            self._released = {}
            for key, value in list(self.table.items()):
                if isinstance(value, dict) and value.get("r") is not None and value.get("s"):
                    self._released.setdefault(value["p"], []).append(key)
        keys = self._released.get(partition, [])
        hits = [k for k in keys if first_offset <= self._entry(k).get("r", -1) <= last_offset]
        if hits:
            self._released[partition] = [k for k in keys if k not in hits]
        return hits
