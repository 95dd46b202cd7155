"""The evalstream worker: a Faust app that validates, joins, scores and sinks LLM events.

One agent consumes the raw bytes of the events topic in batches of at most ``flush_max_events`` events or
``flush_interval_s`` seconds (:func:`streams.batching.take_events_overlapped`: Faust's ``take_events``, except
that the next batch is gathered while this one is processed).
For each batch:

1. every message is parsed and validated; a bad one (malformed JSON, schema violation, or anything that fails
   while scoring it) goes to the dead-letter topic with its original key/value bytes and the reason in headers
   (``evalstream-reason``, ``evalstream-source``), and to the ``dlq`` dataset; nothing is dropped, the worker
   never crashes on input;
2. valid events are joined by ``generation_id`` (:mod:`streams.join`) and turned into long-format scores
   (:mod:`streams.scoring`); the batch's generations are embedded in one call, from a worker thread, by the
   model in a child process (:mod:`streams.encoder_process`), in this process, or in a shared
   ``evalstream encoder`` (:mod:`streams.encoder_server`), and get their semantic, relevance, guardrail and
   quality scores (:mod:`streams.embedding_stage`);
3. per source partition, events, scores and DLQ rows are written as Parquet files named after the partition's
   offset range (:mod:`sinks.parquet`), durably, and only then does the batch return, so Faust acks its
   offsets and may commit them. A failed write is retried (never skipped) until it succeeds.

Example::

    >>> app = create_app(Settings(bootstrap_servers="127.0.0.1:9092"), partitions=6)  # doctest: +SKIP
    >>> run_worker(app)                                                               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT, StreamT

from metrics.embedding_cache import CachedEncoder
from metrics.encoder import Encoder, load_encoder
from metrics.levenshtein import warm_up
from metrics.novelty import RecentOutputs, novelty, novelty_many
from metrics.refresh import ask_key, within_window
from sinks.parquet import PartitionedParquetWriter
from sinks.records import DLQ_SCHEMA, EMBEDDINGS_SCHEMA, EVENTS_SCHEMA, SCORES_SCHEMA, dlq_row, event_row, score_row
from streams import faust_patches
from streams.batching import ack_events, take_events_overlapped
from streams.changelog import BatchedChangelogTable
from streams.embedding_stage import Embedded, EmbeddingScorer, Encoded
from streams.encoder_process import EncoderProcess
from streams.encoder_server import EncoderClient
from streams.evalconfig import ReferenceBook
from streams.join import ExpiringTable, GenerationJoin
from streams.remote_encoder import RemoteEncoder
from streams.schema import EditEvent, Event, EventValidationError, GenerationEvent, parse_event
from streams.scoring import GenerationRef, Score, edit_scores, novelty_scores, refresh_scores, scores_for
from streams.settings import Settings
from streams.topics import ensure_topics

_ASKS_KEPT = 8  # asks kept per (session, app, route, input); a replay finds the earlier one among them
log = logging.getLogger("evalstream.worker")

REASON_HEADER = "evalstream-reason"
SOURCE_HEADER = "evalstream-source"


@dataclass
class WorkerCounters:
    """What the worker has done since it started (logged every 30 s and at shutdown)."""

    valid: int = 0
    dead_lettered: int = 0
    scores: int = 0
    orphans: int = 0  # edit/feedback/regenerate whose generation is unknown or expired
    refreshes: int = 0  # generations that asked an earlier input of their session again
    expired: int = 0  # generations dropped from the join table
    batches: int = 0
    write_retries: int = 0
    skipped_offsets: int = 0  # offsets the consumer jumped over (should stay 0; logged as errors)
    embedded: int = 0  # generations embedded and scored
    embedding_errors: int = 0  # generations stored without embedding scores because encoding failed (logged)
    novelty_errors: int = 0  # generations stored without novelty because computing it failed (logged)
    # where the batches' time went on the event loop (seconds, summed): scoring (parse, join, rules, novelty),
    # waiting for the embeddings once scored (> 0: the model is the limit), writing (state, DLQ, Parquet)
    seconds_scoring: float = 0.0
    seconds_waiting_for_embeddings: float = 0.0
    seconds_writing: float = 0.0


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
    dlq: list[dict[str, Any]] = field(default_factory=list)
    embeddings: list[dict[str, Any]] = field(default_factory=list)


class ParquetSinks:
    """The ``events``, ``scores``, ``embeddings`` and ``dlq`` datasets under one data folder."""

    def __init__(self, settings: Settings) -> None:
        self.events = PartitionedParquetWriter(settings.data_dir, "events", EVENTS_SCHEMA, "ts")
        self.scores = PartitionedParquetWriter(settings.data_dir, "scores", SCORES_SCHEMA, "ts")
        self.embeddings = PartitionedParquetWriter(settings.data_dir, "embeddings", EMBEDDINGS_SCHEMA, "ts")
        self.dlq = PartitionedParquetWriter(settings.data_dir, "dlq", DLQ_SCHEMA, "received_at")

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


def _as_current_event(event: EventT) -> None:
    """Make ``event`` the current event of this task, so table writes go to its changelog partition.

    Only the task-local context variable is set: ``Stream._set_current_event`` would also overwrite the
    stream's shared ``current_event`` attribute, which the batch buffering task reads concurrently.
    """
    _current_event.set(weakref.ref(event))


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
class NoveltyJob:
    """A batch's novelty, running on the novelty thread (:meth:`BatchProcessor._start_novelty`)."""

    indices: dict[str, list[int]]  # per state key, its generations (indices in to_embed)
    owners: dict[str, EventT]  # per state key, an event of its partition (whose changelog the state goes to)
    states: dict[str, RecentOutputs]  # per state key, the recent outputs before the batch
    done: asyncio.Future[dict[str, tuple[list[float | None], RecentOutputs]]]  # values and new state per key


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
    ) -> None:
        self.settings = settings or Settings()
        self.embedder = embedder
        self.recent = recent if recent is not None else {}
        # the latest generation per (session, app, route, normalized input), for refreshes
        self.asks = ExpiringTable(asks if asks is not None else {}, self.settings.refresh_window_s)
        self._encoder_thread = ThreadPoolExecutor(1, "evalstream-encode")
        self._novelty_thread = ThreadPoolExecutor(1, "evalstream-novelty")
        self.join = join
        self.dlq_topic = dlq_topic
        self.sinks = sinks
        self.counters = counters
        self._next_offset: dict[tuple[str, int], int] = {}

    def reset(self) -> None:
        """Forget the offsets seen and the refresh state's expiry heaps (call on partition assignment)."""
        self._next_offset.clear()
        self.asks.reset()

    def _add_scores(self, part: PartitionBatch, scores: list[Score]) -> None:
        part.scores.extend(score_row(s) for s in scores)
        self.counters.scores += len(scores)

    def _check_contiguous(self, part: PartitionBatch) -> None:
        expected = self._next_offset.get((part.topic, part.partition))
        if expected is not None and part.first_offset > expected:
            self.counters.skipped_offsets += part.first_offset - expected
            log.error(
                "%s[%d]: the consumer skipped offsets %d..%d; they were not processed",
                part.topic, part.partition, expected, part.first_offset - 1,
            )  # fmt: skip
        self._next_offset[(part.topic, part.partition)] = part.last_offset + 1

    def _join(self, event: Event, partition: int, now: float) -> GenerationRef | None:
        if isinstance(event, GenerationEvent):
            generation = GenerationRef.of(event)
            self.join.remember(generation, partition, now)
            return generation
        generation_id = getattr(event, "generation_id", None)
        if generation_id is None:
            return None
        ref = self.join.lookup(generation_id)
        if ref is None:
            self.counters.orphans += 1
        return ref

    def _refresh(self, event: GenerationEvent, partition: int, offset: int, now: float) -> list[Score]:
        """``refreshed`` on the earlier generation when ``event`` asks the same thing again (metrics.refresh).

        The state per ask key holds the last few asks with their source offsets, and the earlier ask is the
        newest one *before this offset*: a batch replayed after a crash (its state already written) finds
        the same earlier generations again, not itself or the asks that came after it.
        """
        key = ask_key(event.session_id, event.app, event.route, event.input)
        ts = event.ts.timestamp()
        stored = self.asks.get(key)
        # [offset, generation_id, ts, model, prompt_version], sorted by offset
        asks: list[list[Any]] = [a for a in (stored or {}).get("asks", ()) if a[0] != offset]
        before = [a for a in asks if a[0] < offset]
        asks.insert(len(before), [offset, event.generation_id, ts, event.model, event.prompt_version])
        self.asks.put(key, {"asks": asks[-_ASKS_KEPT:]}, partition, now)
        if not before or not within_window(before[-1][2], ts, self.settings.refresh_window_s):
            return []
        self.counters.refreshes += 1
        _, generation_id, _, model, prompt_version = before[-1]
        return refresh_scores(event, generation_id, model, prompt_version)

    def _start_novelty(self, begun: BegunBatch) -> NoveltyJob:
        """The novelty of the batch's generations, on the novelty thread: one Numba call per app and route.

        Each is compared with the recent outputs of the same app and route seen on its partition (state read
        here, after the previous batch wrote its own back). Every valid generation joins the state, also one
        that a later step sends to the dead-letter topic (a bug, not bad input: input errors are found in
        ``begin``).
        """
        indices: dict[str, list[int]] = {}
        owners: dict[str, EventT] = {}
        for ev, index in zip(begun.batch, begun.embed_at, strict=True):
            if index is not None:
                gen = begun.to_embed[index]
                key = f"{ev.message.partition}:{gen.app}:{gen.route}"
                indices.setdefault(key, []).append(index)
                owners[key] = ev
        k = self.settings.novelty_k
        states = {key: RecentOutputs(k, tuple(self.recent.get(key) or ())) for key in indices}
        work = [(key, [begun.to_embed[i].output for i in rows], states[key]) for key, rows in indices.items()]

        def run() -> dict[str, tuple[list[float | None], RecentOutputs]]:
            return {key: novelty_many(outputs, state) for key, outputs, state in work}

        return NoveltyJob(
            indices, owners, states, asyncio.get_running_loop().run_in_executor(self._novelty_thread, run)
        )

    async def _novelty(
        self, begun: BegunBatch, job: NoveltyJob
    ) -> tuple[dict[int, float | None], dict[str, RecentOutputs]]:
        """Novelty per index in ``to_embed`` and the new state per key; one by one if the batch call fails."""
        try:
            done = await job.done
        except Exception:
            log.exception("novelty of a batch failed; computing it output by output")
            done = {}
            for key, indices in job.indices.items():
                state = job.states[key]
                values: list[float | None] = []
                for i in indices:
                    try:
                        values.append(novelty(begun.to_embed[i].output, state))
                    except Exception as exc:
                        log.error("generation %s stored without novelty: %s", begun.to_embed[i].generation_id, exc)
                        self.counters.novelty_errors += 1
                        values.append(None)
                    state = state.update(begun.to_embed[i].output)
                done[key] = (values, state)
        by_index = {i: v for key, indices in job.indices.items() for i, v in zip(indices, done[key][0], strict=True)}
        return by_index, {key: state for key, (_, state) in done.items()}

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
        to_embed: list[GenerationEvent] = []  # generations without error: novelty and embeddings
        embed_at: list[int | None] = []  # per message, its index in to_embed
        for e in parsed:
            if isinstance(e, GenerationEvent) and not e.error:
                embed_at.append(len(to_embed))
                to_embed.append(e)
            else:
                embed_at.append(None)
        return BegunBatch(batch, parsed, to_embed, embed_at, self._start_embedding(to_embed), t0)

    async def complete(self, begun: BegunBatch) -> None:
        """Pass 2 (join, score, state) while the embeddings run, then their scores, then durable Parquet."""
        started = time.perf_counter()
        batch, parsed, to_embed, embed_at, embedding, t0 = (
            begun.batch, begun.parsed, begun.to_embed, begun.embed_at, begun.embedding, begun.t0,
        )  # fmt: skip
        parts: dict[tuple[str, int], PartitionBatch] = {}
        deliveries = []
        edits: list[tuple[PartitionBatch, EditEvent, GenerationRef]] = []
        scored: list[tuple[PartitionBatch, GenerationEvent, int]] = []  # generations + index in to_embed
        # novelty runs on its own thread meanwhile (Numba, no GIL); its scores are added after the loop
        novelty_job = self._start_novelty(begun)
        store_text = self.settings.store_text
        now = time.time()
        for ev, event_or_error, index in zip(batch, parsed, embed_at, strict=True):
            msg = ev.message
            part = parts.get((msg.topic, msg.partition))
            if part is None:
                part = parts[(msg.topic, msg.partition)] = PartitionBatch(
                    msg.topic, msg.partition, msg.offset, msg.offset, ev
                )
            part.last_offset, part.last_event = msg.offset, ev
            _as_current_event(ev)
            try:
                if isinstance(event_or_error, Exception):
                    raise event_or_error
                event = event_or_error
                ref = self._join(event, msg.partition, now)
                if isinstance(event, EditEvent) and ref is not None:
                    edits.append((part, event, ref))  # scored below, all edits in one batched call
                    scores = []
                else:
                    scores = scores_for(event, ref)
                if isinstance(event, GenerationEvent):
                    scores += self._refresh(event, msg.partition, msg.offset, now)
                if index is not None:
                    scored.append((part, to_embed[index], index))
            except EventValidationError as exc:
                reason = exc.reason
            except Exception as exc:  # never crash on input: dead-letter it with the reason
                log.error("failed to process %s[%d]@%d", msg.topic, msg.partition, msg.offset, exc_info=exc)
                reason = f"processing error: {type(exc).__name__}: {exc}"
            else:
                part.events.append(event_row(event, msg.topic, msg.partition, msg.offset, store_text))
                self._add_scores(part, scores)
                self.counters.valid += 1
                continue
            deliveries.append(
                await self.dlq_topic.send(
                    key=msg.key,
                    value=msg.value,
                    headers=[
                        (REASON_HEADER, reason.encode()),
                        (SOURCE_HEADER, f"{msg.topic}:{msg.partition}:{msg.offset}".encode()),
                    ],
                )
            )
            part.dlq.append(dlq_row(reason, msg.topic, msg.partition, msg.offset, msg.key, msg.value, store_text))
            self.counters.dead_lettered += 1
        for (part, _, _), scores in zip(edits, edit_scores([(e, r) for _, e, r in edits]), strict=True):
            self._add_scores(part, scores)
        novelty_of, recent = await self._novelty(begun, novelty_job)
        generations: list[tuple[PartitionBatch, GenerationEvent, float | None, int]] = []  # + index in to_embed
        for part, gen, index in scored:
            value = novelty_of[index]
            self._add_scores(part, novelty_scores(gen, value))
            generations.append((part, gen, value, index))
        t1 = time.perf_counter()
        if embedding is not None:
            await self._embed(generations, embedding)
        t2 = time.perf_counter()
        for key, state in recent.items():
            _as_current_event(novelty_job.owners[key])  # the key belongs to this partition's changelog
            self.recent[key] = list(state.outputs)
        for part in parts.values():
            _as_current_event(part.last_event)
            self.counters.expired += self.join.expire(part.partition, now)
            self.asks.expire(part.partition, now)
        # the DLQ and the tables' changelogs hold the batch's messages and state before its offsets can commit
        await asyncio.gather(*deliveries, *self._flush_state())
        for part in parts.values():
            self._check_contiguous(part)
        # partitions are independent files: write them side by side (their fsyncs overlap)
        await asyncio.gather(*(self._write_until_durable(part) for part in parts.values()))
        t3 = time.perf_counter()
        c = self.counters
        c.batches += 1
        c.seconds_scoring = round(c.seconds_scoring + t1 - started, 3)
        c.seconds_waiting_for_embeddings = round(c.seconds_waiting_for_embeddings + t2 - t1, 3)
        c.seconds_writing = round(c.seconds_writing + t3 - t2, 3)
        log.debug(
            "batch of %d events: begun %.3fs before, score %.3fs, embed %.3fs, write %.3fs",
            len(batch), started - t0, t1 - started, t2 - t1, t3 - t2,
        )  # fmt: skip

    def _flush_state(self) -> list[Awaitable[None]]:
        """Send the batch's table writes (:class:`streams.changelog.BatchedChangelogTable`) to their changelogs."""
        tables = (self.join.table, self.recent, self.asks.table)
        return [t.flush() for t in tables if isinstance(t, BatchedChangelogTable)]

    def _start_embedding(self, generations: list[GenerationEvent]) -> asyncio.Future[Encoded] | None:
        if self.embedder is None or not generations:
            return None
        return self._on_encoder_thread(self.embedder.encode, generations)

    def _on_encoder_thread(self, fn: Callable[[list[GenerationEvent]], Encoded], arg: list[GenerationEvent]) -> Any:
        """Run ``fn(arg)`` on the one encoder thread: calls queue up in order, and the encoder and its cache
        are never used from two threads at once."""
        return asyncio.get_running_loop().run_in_executor(self._encoder_thread, fn, arg)

    async def _embed(
        self,
        generations: list[tuple[PartitionBatch, GenerationEvent, float | None, int]],
        embedding: asyncio.Future[Encoded],
    ) -> None:
        """Score the batch's generations once their embeddings (started in pass 1) are ready.

        If encoding the batch failed, it is encoded once more (an encoder process that died has been replaced
        by then); if that fails too, each generation is encoded alone, and one that still fails keeps its
        event and other scores, is logged with the reason and counted in ``embedding_errors``.
        """
        assert self.embedder is not None
        embedder = self.embedder
        pairs = [(gen, value) for _, gen, value, _ in generations]
        vectors: Encoded | None
        try:
            vectors = (await embedding).take([index for *_, index in generations])
        except Exception:
            log.exception("embedding a batch of %d generations failed; encoding it again", len(generations))
            try:
                vectors = await self._on_encoder_thread(embedder.encode, [gen for gen, _ in pairs])
            except Exception:
                log.exception("the batch failed again; encoding its %d generations one by one", len(pairs))
                vectors = None
        results: list[Embedded | None] = []
        if vectors is not None:
            results.extend(embedder.finish(pairs, vectors))
        else:
            for pair in pairs:
                try:
                    one = await self._on_encoder_thread(embedder.encode, [pair[0]])
                except Exception as exc:
                    log.error("generation %s stored without embedding scores: %s", pair[0].generation_id, exc)
                    self.counters.embedding_errors += 1
                    results.append(None)
                else:
                    results.extend(embedder.finish([pair], one))
        for (part, *_), result in zip(generations, results, strict=True):
            if result is None:
                continue
            self._add_scores(part, result.scores)
            part.embeddings.append(result.row)
            self.counters.embedded += 1

    async def _write_until_durable(self, part: PartitionBatch) -> None:
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self.sinks.write, part)
                return
            except Exception:
                self.counters.write_retries += 1
                log.exception(
                    "writing Parquet for %s[%d] offsets %d..%d failed; retrying in %.1fs (offsets stay uncommitted)",
                    part.topic, part.partition, part.first_offset, part.last_offset, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


def create_embedder(settings: Settings) -> EmbeddingScorer | None:
    """The embedding stage from settings (None when ``embed_backend=off``); raises ConfigError on a bad config."""
    if settings.embed_backend == "off":
        log.info("embedding stage off (EVALSTREAM_EMBED_BACKEND=off)")
        return None

    started = time.perf_counter()
    encoder: Encoder
    if settings.embed_server is not None:  # the model (and its settings) are the server's
        encoder = EncoderClient.connect(settings.embed_server)
    elif settings.embed_process:
        encoder = EncoderProcess.start(**settings.encoder_options())
    else:
        encoder = load_encoder(**settings.encoder_options())
    cached = CachedEncoder(encoder, settings.embed_cache_size)
    try:
        book = ReferenceBook(settings.eval_config, cached)
    except BaseException:
        if isinstance(encoder, RemoteEncoder):
            encoder.close()  # an invalid config stops the worker: stop its encoder process now, not at exit
        raise
    if settings.eval_config is None:
        log.warning("no EVALSTREAM_EVAL_CONFIG: only relevance and quality (from novelty/relevance) are scored")
    log.info("embedding stage ready in %.2fs (encoder %s)", time.perf_counter() - started, encoder.name)
    return EmbeddingScorer(cached, book, settings.embed_inputs)


def _broker_urls(bootstrap_servers: str) -> str:
    return ";".join(f"kafka://{s.strip()}" for s in bootstrap_servers.split(",") if s.strip())


def create_app(settings: Settings, partitions: int | None = None) -> faust.App:
    """Build the worker's Faust app from settings; ``partitions`` defaults to the events topic's count."""
    if partitions is None:
        partitions = ensure_topics(settings)
    started = time.perf_counter()
    warm_up()  # compile the Numba kernels now (or load them from the on-disk cache), not on the first batch
    log.info("Levenshtein kernels ready in %.2fs", time.perf_counter() - started)
    embedder = create_embedder(settings)
    if embedder is not None and not isinstance(embedder.encoder.inner, RemoteEncoder):
        # The model's threads in this process need the GIL briefly between runs; hand it over sooner than every 5 ms.
        sys.setswitchinterval(0.0005)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.worker_id,
        broker=_broker_urls(settings.bootstrap_servers),
        store="memory://",
        datadir=str(settings.data_dir / "_faust"),  # Faust's own files, beside the datasets
        topic_partitions=partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        # DLQ messages in fewer, larger produce requests (Faust's default sends each message as soon as it is
        # queued). It first served the table changelogs too (2 cores, embeddings off: 1,875-2,022 -> 2,245-2,476
        # generations/s); those now leave in one record batch per partition and batch (streams.changelog)
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=settings.producer_max_batch_bytes,
    )
    # A batch may dead-letter every one of its events at once. Faust's producer buffer holds 100 messages before
    # it stalls the stream, with a warning per 100 sent ("producer buffer full"; seen at 100-124 per 20,000 events
    # when the table writes went this way too, and no faster for it). Room for a few batches' worth.
    buffer = app.producer.buffer
    buffer.max_messages = max(buffer.max_messages, 4 * settings.flush_max_events)
    source = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw")
    dlq_topic = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw")

    def table(name: str) -> BatchedChangelogTable:  # JSON keys and values; changelog writes sent once per batch
        created = BatchedChangelogTable(app, name=name, default=None, beacon=app.tables.beacon, partitions=partitions)
        app.tables.add(created)
        return created

    counters = WorkerCounters()
    join = GenerationJoin(table("generations"), settings.join_ttl_s)
    sinks = ParquetSinks(settings)
    # recent outputs per "<partition>:<app>:<route>", for novelty (written only from that partition)
    recent = table("recent_outputs")
    # latest generation per session/app/route/input, for refreshes (keys from the session's partition)
    asks = table("recent_asks")
    processor = BatchProcessor(join, dlq_topic, sinks, counters, recent, settings, embedder, asks)
    app.evalstream_counters = counters  # type: ignore[attr-defined]

    @app.on_partitions_assigned.connect  # type: ignore[untyped-decorator,arg-type]
    async def _on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        sinks.forget_partitions()
        join.reset()
        processor.reset()

    @app.agent(source, name="evaluate")  # type: ignore[untyped-decorator]
    async def evaluate(stream: StreamT) -> None:
        if faust_patches.keep_stream_queue_on_resume(app, stream):
            log.info("input queue kept out of flow-control clearing (see streams/faust_patches.py)")
        batches = take_events_overlapped(stream, settings.flush_max_events, settings.flush_interval_s, ack=False)
        # Batch N+1 begins (parsed, embeddings queued behind N's) while N completes; N's events are acked
        # once N is durable. Completions run one after another, in order; at most two batches are in flight.
        in_flight: list[asyncio.Task[None]] = []

        async def complete(begun: BegunBatch, previous: asyncio.Task[None] | None) -> None:
            if previous is not None:
                await previous
            await processor.complete(begun)
            await ack_events(stream, begun.batch)

        try:
            async for batch in batches:
                begun = processor.begin(batch)
                in_flight.append(asyncio.create_task(complete(begun, in_flight[-1] if in_flight else None)))
                if len(in_flight) >= 2:
                    await in_flight.pop(0)
            for task in in_flight:
                await task
        finally:
            for task in in_flight:
                task.cancel()  # not acked: replayed after the restart or rebalance

    @app.timer(interval=30.0)  # type: ignore[untyped-decorator]
    async def _report() -> None:
        log.info("evalstream counters: %s", asdict(counters))

    return app


def run_worker(app: faust.App, loglevel: str = "info") -> None:
    """Run the app until SIGINT/SIGTERM (a clean stop: unflushed events stay uncommitted and are replayed)."""
    from faust.worker import Worker

    # Everything loaded so far (model, kernels, Faust) lives as long as the process: keep it out of the cyclic
    # GC's scans, which otherwise walk all of it whenever a batch's short-lived objects trigger a full collection.
    gc.collect()
    gc.freeze()
    worker = Worker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        log.info("evalstream counters at shutdown: %s", asdict(app.evalstream_counters))  # type: ignore[attr-defined]
