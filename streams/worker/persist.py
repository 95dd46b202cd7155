"""The rows of one batch per source partition, and writing them to Parquet until it is durable.

A batch's offsets commit only after :func:`write_until_durable` returns for each of its partitions: a write
that fails is retried (never skipped), with backoff, and the offsets stay uncommitted meanwhile.

Example (a temporary data folder; ``last_event`` is only read by the caller, so None will do here)::

    >>> import asyncio, tempfile
    >>> from sinks.catalog import connect
    >>> from streams.sdk.schema import parse_event
    >>> from streams.worker.rows import event_row
    >>> ev = parse_event(b'{"type":"regenerate","event_id":"e","ts":"2026-11-25T10:00:00Z","session_id":"s",'
    ...                  b'"app":"a","generation_id":"g"}')
    >>> part = PartitionBatch("llm.events", 0, 42, 42, None, events=[event_row(ev, "llm.events", 0, 42)])
    >>> data_dir = Path(tempfile.mkdtemp())
    >>> asyncio.run(write_until_durable(ParquetSinks(data_dir), part, WorkerCounters()))
    >>> [p.name for p in sorted(data_dir.glob("*/dt=*/*.parquet"))]
    ['llm.events-00000-00000000000000000042-00000000000000000042.parquet']
    >>> connect(data_dir).execute("SELECT type, generation_id, _offset FROM events").fetchall()
    [('regenerate', 'g', 42)]
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faust.types import EventT

from sinks.parquet import PartitionedParquetWriter
from sinks.schemas import DLQ_SCHEMA, EMBEDDINGS_SCHEMA, EVENTS_SCHEMA, SCORES_SCHEMA
from sinks.store import Store
from streams.worker.counters import WorkerCounters

log = logging.getLogger("evalstream.worker")


@dataclass
class PartitionBatch:
    """The rows one batch produced from one source partition."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    last_event: EventT
    events: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    score_offsets: list[int] = field(default_factory=list)  # per score row, the offset it is tied to
    dlq: list[dict[str, Any]] = field(default_factory=list)
    embeddings: list[dict[str, Any]] = field(default_factory=list)


class ParquetSinks:
    """The ``events``, ``scores``, ``embeddings`` and ``dlq`` datasets under one data folder."""

    def __init__(self, data_dir: str | Path | Store) -> None:
        self.events = PartitionedParquetWriter(data_dir, "events", EVENTS_SCHEMA, "ts")
        self.scores = PartitionedParquetWriter(data_dir, "scores", SCORES_SCHEMA, "ts")
        self.embeddings = PartitionedParquetWriter(data_dir, "embeddings", EMBEDDINGS_SCHEMA, "ts")
        self.dlq = PartitionedParquetWriter(data_dir, "dlq", DLQ_SCHEMA, "received_at")

    def forget_partitions(self) -> None:
        for writer in (self.events, self.scores, self.embeddings, self.dlq):
            writer.forget_partitions()

    def write(self, batch: PartitionBatch) -> None:
        span = (batch.topic, batch.partition, batch.first_offset, batch.last_offset)
        # Always write (or clean) all of them, so a replay also replaces an earlier run's leftovers.
        for writer, rows in (
            (self.events, batch.events),
            (self.scores, batch.scores),
            (self.embeddings, batch.embeddings),
            (self.dlq, batch.dlq),
        ):
            writer.write(*span, rows)


async def write_until_durable(sinks: ParquetSinks, part: PartitionBatch, counters: WorkerCounters) -> None:
    """Write ``part`` (off the event loop), retrying with backoff up to 30 s apart until it succeeds."""
    delay = 0.5
    while True:
        try:
            await asyncio.to_thread(sinks.write, part)
            return
        except Exception:
            counters.write_retries += 1
            log.exception(
                "writing Parquet for %s[%d] offsets %d..%d failed; retrying in %.1fs (offsets stay uncommitted)",
                part.topic, part.partition, part.first_offset, part.last_offset, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
