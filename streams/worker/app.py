"""The worker process: build the Faust app from settings, wire the batch processor to its agent, run it.

One agent consumes the raw bytes of the events topic in batches of at most ``flush_max_events`` events or
``flush_interval_s`` seconds, gathering batch N+1 while N is processed (:mod:`streams.faust_ext.batching`).
What happens to a batch is :mod:`streams.worker.batch`; its offsets are acked only once it is durable.

Usage (needs a broker; ``evalstream worker`` does this)::

    app = create_app(Settings(bootstrap_servers="127.0.0.1:9092"), partitions=6)
    run_worker(app)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from dataclasses import asdict
from typing import Any

import faust
from faust.types import StreamT

from metrics.levenshtein import warm_up
from streams.alerts.agent import install as install_alerts
from streams.alerts.agent import load_rules
from streams.embedding.cache import CachedEncoder
from streams.embedding.encoder import load_encoder
from streams.embedding.model import Encoder
from streams.embedding.process import EncoderProcess
from streams.embedding.protocol import RemoteEncoder
from streams.embedding.server import EncoderClient
from streams.fail_stop import FAILED_EXIT_STATUS as FAILED_EXIT_STATUS
from streams.fail_stop import exit_after_failed_batch
from streams.faust_ext import unverified_faust_version
from streams.faust_ext.batching import ack_events
from streams.faust_ext.changelog import BatchedChangelogTable
from streams.faust_ext.own_offsets import OwnedOffsets
from streams.faust_ext.stall import StallDetector
from streams.settings import Settings
from streams.topics import MAX_STATE_RECORD_BYTES, ensure_topics
from streams.worker.batch import BatchProcessor, BegunBatch
from streams.worker.counters import WorkerCounters
from streams.worker.dedup import SeenEvents
from streams.worker.embedding_scores import EmbeddingScorer
from streams.worker.evalconfig import ReferenceBook
from streams.worker.join import GenerationJoin
from streams.worker.persist import ParquetSinks
from streams.worker.prometheus import install as install_metrics
from streams.worker.traces import TraceJoin
from streams.worker.window_stage import WindowStage
from streams.worker.windows import LiveWindows

log = logging.getLogger("evalstream.worker")


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


# the worker's Faust tables (each with a compacted changelog topic, created up front by ensure_topics)
TABLES = ("generations", "recent_outputs", "recent_asks", "traces", "windows", "alerting", "event_ids")


def create_app(settings: Settings, partitions: int | None = None) -> faust.App:
    """Build the worker's Faust app from settings; ``partitions`` defaults to the events topic's count."""
    rules = load_rules(settings) if settings.alerts_in_worker else None  # a bad rules file stops us before anything
    if partitions is None:
        partitions = ensure_topics(settings, tables=TABLES)
    if warning := unverified_faust_version():
        log.warning(warning)
    started = time.perf_counter()
    warm_up()  # compile the Numba kernels now (or load them from the on-disk cache), not on the first batch
    log.info("Levenshtein kernels ready in %.2fs", time.perf_counter() - started)
    embedder = create_embedder(settings)
    if embedder is not None and not isinstance(embedder.encoder.inner, RemoteEncoder):
        # The model's threads in this process need the GIL briefly between runs; hand it over sooner than every 5 ms.
        sys.setswitchinterval(0.0005)
    settings.store.check()  # an unreachable object store or an unwritable folder stops us here, saying why
    app = faust.App(
        settings.worker_id,
        broker=_broker_urls(settings.bootstrap_servers),
        store="memory://",
        datadir=str(settings.faust_dir),  # Faust's own files: local, beside the datasets unless those are remote
        topic_partitions=partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # offsets acked since the last commit are replayed after a crash (the sinks overwrite, so no duplicates)
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,  # a crashed worker's partitions wait this long
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        # DLQ messages in fewer, larger produce requests (Faust's default sends each message as soon as it is
        # queued); the table changelogs leave in bulk anyway (streams.faust_ext.changelog)
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        producer_max_request_size=MAX_STATE_RECORD_BYTES,  # a state record with long texts (see streams.topics)
    )
    # A batch may dead-letter every one of its events at once, and Faust's producer buffer stalls the stream
    # (warning "producer buffer full") past 100 messages: room for a few batches' worth.
    buffer = app.producer.buffer
    buffer.max_messages = max(buffer.max_messages, 4 * settings.flush_max_events)
    source = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw")
    dlq_topic = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw")

    def table(name: str) -> BatchedChangelogTable:  # JSON keys and values; changelog writes sent once per batch
        if name not in TABLES:
            raise ValueError(f"table {name!r} is not in TABLES: its changelog topic would not be created up front")
        created = BatchedChangelogTable(app, name=name, default=None, beacon=app.tables.beacon, partitions=partitions)
        app.tables.add(created)
        return created

    counters = WorkerCounters()
    # this worker, not Faust, commits the events topic's offsets: only what it processed in order and wrote
    stalls = StallDetector(settings.stall_after_s)
    owned = OwnedOffsets(app, settings.events_topic, settings.commit_interval_s, counters, stalls=stalls)
    owned.install()
    join = GenerationJoin(table("generations"), settings.join_ttl_s)
    sinks = ParquetSinks(settings.store)
    # recent outputs per "<partition>:<app>:<route>", for novelty (written only from that partition)
    recent = table("recent_outputs")
    # latest generation per session/app/route/input, for refreshes (keys from the session's partition)
    asks = table("recent_asks")
    # spans and the generation of their trace, by trace id (streams.worker.traces)
    traces = TraceJoin(table("traces"), settings.join_ttl_s)
    # event ids processed recently per partition: a repeated id is a duplicate (streams.worker.dedup)
    seen = SeenEvents(table("event_ids"), settings.dedup_horizon_s) if settings.dedup_horizon_s > 0 else None
    windows = None
    if settings.windows:  # live windows per partition, group and metric, emitted to the metrics topic once closed
        live = LiveWindows(table("windows"), settings.window_s, settings.window_grace_s, settings.window_idle_s)
        metrics_topic = app.topic(settings.metrics_topic, key_serializer="raw", value_serializer="raw")

        def assigned() -> list[int]:
            return [tp.partition for tp in app.consumer.assignment() if tp.topic == settings.events_topic]

        windows = WindowStage(live, metrics_topic, partitions, partitions, assigned, counters)

        @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
        async def _close_windows() -> None:  # windows the clocks made due while no batch came
            await windows.tick()

    alerting = install_alerts(app, settings, table("alerting"), rules) if rules is not None else None
    processor = BatchProcessor(
        join, dlq_topic, sinks, counters, recent, settings, embedder, asks, traces, windows, seen,
        owned.committed,
    )  # fmt: skip
    detectors = [stalls, alerting.stalls] if alerting is not None else [stalls]
    install_metrics(app, settings, counters, processor, alerting, detectors)  # /metrics and the status file
    app.evalstream_counters = counters  # type: ignore[attr-defined]

    @app.on_partitions_assigned.connect  # type: ignore[untyped-decorator,arg-type]
    async def _on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        sinks.forget_partitions()
        join.reset()
        processor.reset()

    @app.agent(source, name="evaluate")  # type: ignore[untyped-decorator]
    async def evaluate(stream: StreamT) -> None:
        batches = owned.batches(stream, settings.flush_max_events, settings.flush_interval_s)
        # Batch N+1 begins (parsed, embeddings queued behind N's) while N completes; N's events are acked
        # once N is durable. Completions run one after another, in order; at most two batches are in flight.
        in_flight: list[asyncio.Task[None]] = []

        async def complete(begun: BegunBatch, previous: asyncio.Task[None] | None) -> None:
            if previous is not None:
                await previous
            await processor.complete(begun)
            await owned.durable(begun.batch)
            await ack_events(stream, begun.batch)

        try:
            async for batch in batches:
                begun = processor.begin(batch)
                in_flight.append(asyncio.create_task(complete(begun, in_flight[-1] if in_flight else None)))
                if len(in_flight) >= 2:
                    await in_flight.pop(0)
            for task in in_flight:
                await task
        except Exception as exc:  # outside the per-message guards: exit, and the restart replays the batch
            exit_after_failed_batch(exc, "worker")
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
