"""One batch of raw messages through the worker, as named phases.

Pass 1, :meth:`BatchProcessor.begin`, parses the batch and queues its embeddings; it reads no state, so the
agent begins batch N+1 while N completes. Pass 2, :meth:`BatchProcessor.complete`, is the list of phases:

1. novelty starts on its own thread (:mod:`streams.worker.novelty_stage`);
2. every message: join by ``generation_id`` (:mod:`streams.worker.join`), rule scores
   (:mod:`streams.worker.scoring`), refreshes (:mod:`streams.worker.refreshes`); a message that fails goes to
   the dead letters with the reason (:mod:`streams.worker.dead_letters`) -- nothing is dropped, the worker never
   crashes on input;
3. edits: one batched Levenshtein call;
4. novelty scores, once the thread is done;
5. embedding scores, once the model is done (:mod:`streams.worker.embedding_scores`);
6. state: recent outputs, join, ask and trace expiry written to the tables (spans whose generation never came are
   scored here: :mod:`streams.worker.traces`); the scores applied to the live windows, and the windows that closed
   emitted to the metrics topic (:mod:`streams.worker.window_stage`);
7. Kafka: the dead letters and the tables' changelog writes acknowledged;
8. persist: each partition's rows written to Parquet, durably (:mod:`streams.worker.persist`); only then does
   ``complete`` return and the agent ack the batch's offsets.

Usage (inside the worker's agent, which needs a broker; ``tests/streams/worker/test_batch.py`` runs it)::

    processor = BatchProcessor(join, dlq_topic, sinks, counters, recent, settings, embedder, asks)
    await processor.complete(processor.begin(batch))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import EventT

from streams.faust_ext.changelog import BatchedChangelogTable
from streams.faust_ext.current_event import set_current_event
from streams.sdk.schema import EditEvent, Event, EventValidationError, GenerationEvent, SpanEvent, parse_event
from streams.settings import Settings
from streams.worker.counters import WorkerCounters
from streams.worker.dead_letters import dead_letter_headers
from streams.worker.dedup import SeenEvents
from streams.worker.embedding_scores import EmbeddingScorer, EmbeddingStage, Encoded
from streams.worker.join import GenerationJoin
from streams.worker.novelty_stage import NoveltyJob, NoveltyStage, novelty_scores
from streams.worker.persist import ParquetSinks, PartitionBatch, write_until_durable
from streams.worker.refreshes import Refreshes
from streams.worker.rows import dlq_row, event_row, score_row
from streams.worker.scoring import GenerationRef, Score, edit_scores, scores_for
from streams.worker.traces import TraceJoin
from streams.worker.window_stage import WindowStage

log = logging.getLogger("evalstream.worker")


@dataclass
class BegunBatch:
    """A batch after :meth:`BatchProcessor.begin`: parsed, its embeddings queued."""

    batch: Sequence[EventT]
    parsed: list[Event | Exception]
    to_embed: list[GenerationEvent]  # generations without error: novelty and embeddings
    embed_at: list[int | None]  # per message, its index in to_embed
    embedding: asyncio.Future[Encoded] | None
    t0: float


@dataclass
class ScoredBatch:
    """The batch's rows per source partition, and what the later phases still owe it."""

    novelty: NoveltyJob  # running on the novelty thread from the start
    parts: dict[tuple[str, int], PartitionBatch] = field(default_factory=dict)
    deliveries: list[Awaitable[Any]] = field(default_factory=list)  # dead letters sent to Kafka
    edits: list[tuple[PartitionBatch, EditEvent, GenerationRef, int]] = field(default_factory=list)  # + offset
    generations: list[tuple[PartitionBatch, GenerationEvent, int]] = field(default_factory=list)  # + index in to_embed
    offsets: dict[int, int] = field(default_factory=dict)  # index in to_embed -> the generation's offset

    def part(self, ev: EventT) -> PartitionBatch:
        """The rows of ``ev``'s partition, which now ends at ``ev``."""
        msg = ev.message
        part = self.parts.get((msg.topic, msg.partition))
        if part is None:
            part = self.parts[(msg.topic, msg.partition)] = PartitionBatch(
                msg.topic, msg.partition, msg.offset, msg.offset, ev
            )
        part.last_offset, part.last_event = msg.offset, ev
        return part


class BatchProcessor:
    """Validates, joins, scores and sinks one batch of raw messages."""

    def __init__(
        self,
        join: GenerationJoin,
        dlq_topic: faust.types.TopicT,
        sinks: ParquetSinks,
        counters: WorkerCounters,
        recent: MutableMapping[str, Any] | None = None,
        settings: Settings | None = None,
        embedder: EmbeddingScorer | None = None,
        asks: MutableMapping[str, Any] | None = None,
        traces: TraceJoin | None = None,
        windows: WindowStage | None = None,
        seen: SeenEvents | None = None,
        committed: Callable[[int], int | None] = lambda partition: None,
    ) -> None:
        self.settings = settings or Settings()
        self.join = join
        # spans and their generation, by trace id (both arrival orders; see streams.worker.traces)
        self.traces = traces if traces is not None else TraceJoin({}, self.settings.join_ttl_s)
        self.dlq_topic = dlq_topic
        self.sinks = sinks
        self.counters = counters
        # ``committed``: per source partition, where a replay would start (the recent outputs are kept back to it)
        self.committed = committed
        self.novelty = NoveltyStage(
            recent if recent is not None else {}, self.settings.novelty_k, counters, self.settings.novelty_level,
            committed,
        )  # fmt: skip
        # the latest generations per (session, app, route, normalized input)
        self.refreshes = Refreshes(asks if asks is not None else {}, self.settings.refresh_window_s, counters)
        self.embeddings = EmbeddingStage(embedder, counters) if embedder is not None else None
        self.windows = windows  # live windows of the scores (None: off)
        self.seen = seen  # the event ids processed recently, per partition (None: no de-duplication)
        # told of each batch once it is durable (the worker's Prometheus metrics: streams.worker.prometheus)
        self.observers: list[Callable[[BegunBatch, ScoredBatch], None]] = []

    def reset(self) -> None:
        """Forget the refresh and trace state's expiry heaps (call on partition assignment)."""
        self.refreshes.reset()
        self.traces.reset()
        if self.seen is not None:
            self.seen.reset()
        if self.windows is not None:
            self.windows.reset()

    async def process(self, batch: Sequence[EventT]) -> None:
        """One batch, start to end (the agent overlaps :meth:`begin` of the next batch with :meth:`complete`)."""
        await self.complete(self.begin(batch))

    def begin(self, batch: Sequence[EventT]) -> BegunBatch:
        """Pass 1: parse every message and queue the generations' embeddings on the encoder thread.

        No state is read or written here, so the next batch can begin while this one is being completed: its
        embeddings then start the moment the previous ones are done, and the model never waits for the
        scoring, the Parquet writes or the next batch's parsing.
        """
        t0 = time.perf_counter()
        parsed: list[Event | Exception] = []
        for ev in batch:
            try:
                parsed.append(parse_event(ev.message.value))
            except Exception as exc:  # reported in pass 2
                parsed.append(exc)
        to_embed: list[GenerationEvent] = []
        embed_at: list[int | None] = []
        for e in parsed:
            if isinstance(e, GenerationEvent) and not e.error:
                embed_at.append(len(to_embed))
                to_embed.append(e)
            else:
                embed_at.append(None)
        embedding = self.embeddings.start(to_embed) if self.embeddings is not None else None
        return BegunBatch(batch, parsed, to_embed, embed_at, embedding, t0)

    async def complete(self, begun: BegunBatch) -> None:
        """Pass 2: the phases, in order (see the module's docstring); novelty and embeddings run meanwhile."""
        started = time.perf_counter()
        scored = ScoredBatch(self.novelty.start(begun.batch, begun.to_embed, begun.embed_at))
        now = time.time()
        await self._score_messages(begun, scored, now)
        self._score_edits(scored)
        values = await self._score_novelty(begun, scored)
        scoring_done = time.perf_counter()
        await self._score_embeddings(begun, scored, values)
        embeddings_done = time.perf_counter()
        self._save_state(scored, now)
        if self.windows is not None:  # emitted (and acknowledged) before the state that held them is flushed
            await self.windows.after_batch(scored.parts.values(), now)
        await self._flush_kafka(scored)
        await self._persist(scored)
        self._count_time(begun, started, scoring_done, embeddings_done)
        for observe in self.observers:
            observe(begun, scored)

    async def _score_messages(self, begun: BegunBatch, scored: ScoredBatch, now: float) -> None:
        """Join and rule-score every message; dead-letter those that fail, with the reason."""
        store_text = self.settings.store_text
        for ev, event_or_error, index in zip(begun.batch, begun.parsed, begun.embed_at, strict=True):
            msg = ev.message
            part = scored.part(ev)
            set_current_event(ev)  # table writes while scoring it go to its partition's changelog
            try:
                if isinstance(event_or_error, Exception):
                    raise event_or_error
                event = event_or_error
                self._check_duplicate(event, msg.partition, msg.offset, now)
                scores = self._score_event(event, msg.partition, msg.offset, now, part, scored)
                if index is not None:
                    scored.generations.append((part, begun.to_embed[index], index))
                    scored.offsets[index] = msg.offset
            except EventValidationError as exc:
                reason = exc.reason
            except Exception as exc:  # never crash on input: dead-letter it with the reason
                log.error("failed to process %s[%d]@%d", msg.topic, msg.partition, msg.offset, exc_info=exc)
                reason = f"processing error: {type(exc).__name__}: {exc}"
            else:
                part.events.append(event_row(event, msg.topic, msg.partition, msg.offset, store_text))
                self._add_scores(part, scores, msg.offset)
                self.counters.valid += 1
                continue
            headers = dead_letter_headers(reason, msg.topic, msg.partition, msg.offset)
            scored.deliveries.append(await self.dlq_topic.send(key=msg.key, value=msg.value, headers=headers))
            part.dlq.append(dlq_row(reason, msg.topic, msg.partition, msg.offset, msg.key, msg.value, store_text))
            self.counters.dead_lettered += 1

    def _check_duplicate(self, event: Event, partition: int, offset: int, now: float) -> None:
        """Raise EventValidationError when ``event`` repeats an ``event_id`` its partition processed recently."""
        if self.seen is None:
            return
        first = self.seen.first_offset(event.event_id, partition, offset, now)
        if first is not None:
            self.counters.duplicates += 1
            raise EventValidationError(f"duplicate event_id {event.event_id!r}: first at offset {first}")

    def _score_event(
        self, event: Event, partition: int, offset: int, now: float, part: PartitionBatch, scored: ScoredBatch
    ) -> list[Score]:
        """The rule scores of one event and its refresh; an edit is set aside for the batched edit phase.

        A generation joins the state (join table, refresh asks) only once it is scored: one that fails goes to the
        dead letters and leaves no state for a follow-up to join.
        """
        if isinstance(event, GenerationEvent):
            generation = GenerationRef.of(event)
            scores = scores_for(event, generation)
            scores += self.refreshes.scores(event, partition, offset, now)
            self.join.remember(generation, partition, now)
            if event.trace_id:
                scores += self.traces.on_generation(generation, event.trace_id, partition, offset, now)
            return scores
        if isinstance(event, SpanEvent):
            return self.traces.on_span(event, partition, offset, now)
        ref = self._lookup(event, now)
        if isinstance(event, EditEvent) and ref is not None:
            scored.edits.append((part, event, ref, offset))
            return []
        return scores_for(event, ref)

    def _lookup(self, event: Event, now: float) -> GenerationRef | None:
        """The generation a follow-up refers to; None (an orphan, counted) when unknown or expired."""
        generation_id = getattr(event, "generation_id", None)
        if generation_id is None:
            return None
        ref = self.join.lookup(generation_id, now)
        if ref is None:
            self.counters.orphans += 1
        return ref

    def _score_edits(self, scored: ScoredBatch) -> None:
        edits = scored.edits
        for (part, _, _, offset), scores in zip(edits, edit_scores([(e, r) for _, e, r, _ in edits]), strict=True):
            self._add_scores(part, scores, offset)

    async def _score_novelty(self, begun: BegunBatch, scored: ScoredBatch) -> dict[int, float | None]:
        values = await self.novelty.result(scored.novelty, begun.to_embed)
        for part, gen, index in scored.generations:
            self._add_scores(part, novelty_scores(gen, values[index]), scored.offsets[index])
        return values

    async def _score_embeddings(self, begun: BegunBatch, scored: ScoredBatch, novelty: dict[int, float | None]) -> None:
        if self.embeddings is None or begun.embedding is None:
            return
        pairs = [(gen, novelty[index]) for _, gen, index in scored.generations]
        rows = [index for *_, index in scored.generations]
        results = await self.embeddings.finish(pairs, rows, begun.embedding)
        for (part, _, index), result in zip(scored.generations, results, strict=True):
            if result is None:
                continue
            self._add_scores(part, result.scores, scored.offsets[index])
            part.embeddings.append(result.row)
            self.counters.embedded += 1

    def _save_state(self, scored: ScoredBatch, now: float) -> None:
        """The tables: new recent outputs, and the join's and asks' expired entries deleted."""
        self.novelty.save(scored.novelty)
        for part in scored.parts.values():
            set_current_event(part.last_event)
            self.counters.expired += self.join.expire(part.partition, now)
            self.refreshes.expire(part.partition, now)
            if self.seen is not None:
                self.seen.expire(part.partition, now)
            released = self.traces.expire_spans(part.partition, part.first_offset, part.last_offset, now)
            self._add_scores(part, released, part.last_offset)
        self.counters.spans_unjoined = self.traces.unjoined

    async def _flush_kafka(self, scored: ScoredBatch) -> None:
        """The dead letters and the tables' changelogs hold the batch before its offsets can commit."""
        tables = [self.join.table, self.novelty.recent, self.refreshes.table, self.traces.table]
        if self.seen is not None:
            tables.append(self.seen.table)
        if self.windows is not None:
            tables.append(self.windows.live.table)
        flushes = [t.flush() for t in tables if isinstance(t, BatchedChangelogTable)]
        await asyncio.gather(*scored.deliveries, *flushes)

    async def _persist(self, scored: ScoredBatch) -> None:
        # partitions are independent files: write them side by side (their fsyncs overlap)
        await asyncio.gather(*(write_until_durable(self.sinks, part, self.counters) for part in scored.parts.values()))

    def _add_scores(self, part: PartitionBatch, scores: list[Score], offset: int) -> None:
        """``scores`` emitted at ``offset`` (the message they are tied to: a replay from there emits them again)."""
        part.scores.extend(score_row(s) for s in scores)
        part.score_offsets.extend([offset] * len(scores))
        self.counters.scores += len(scores)

    def _count_time(self, begun: BegunBatch, started: float, scoring_done: float, embeddings_done: float) -> None:
        written = time.perf_counter()
        c = self.counters
        c.batches += 1
        c.seconds_scoring = round(c.seconds_scoring + scoring_done - started, 3)
        c.seconds_waiting_for_embeddings = round(c.seconds_waiting_for_embeddings + embeddings_done - scoring_done, 3)
        c.seconds_writing = round(c.seconds_writing + written - embeddings_done, 3)
        log.debug(
            "batch of %d events: begun %.3fs before, score %.3fs, embed %.3fs, write %.3fs",
            len(begun.batch), started - begun.t0, scoring_done - started, embeddings_done - scoring_done,
            written - embeddings_done,
        )  # fmt: skip
