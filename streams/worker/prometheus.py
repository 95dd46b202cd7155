"""The worker's Prometheus metrics (``/metrics`` on ``EVALSTREAM_WORKER_METRICS_PORT``) and its status file.

Prometheus scrapes what a worker did; the status file (:mod:`sinks.status`) tells ``GET /v1/pipeline`` and
``evalstream status`` the same without asking the worker. Both are fed from the same places: the batch processor
calls :meth:`WorkerMetrics.on_batch` once a batch is durable, the alerting agent reports alerts and webhook
deliveries, and :class:`streams.worker.counters.WorkerCounters` is read at each scrape. Each worker has its own
:class:`~prometheus_client.CollectorRegistry` (never the global one), so several can live in one process.

Metrics (counters end in ``_total``):

- ``evalstream_worker_events_total{type}``: messages consumed, by event type (``invalid``: dead-lettered);
- ``evalstream_worker_dead_letters_total{reason}``: by reason, cut to 60 characters with the variable parts
  (numbers, the ``(got …)`` values, the text of a processing error) removed, so the labels stay few;
- ``evalstream_worker_batch_seconds``: a batch from its parse to durable Parquet (histogram);
- ``evalstream_worker_consumer_lag{partition}``: high watermark minus the consumer's position, every 5 s;
- ``evalstream_worker_stalled_partitions``: partitions (of the events topic, and of the metrics topic for the
  alerting agent) with messages waiting and no durable batch for ``EVALSTREAM_STALL_AFTER_S``
  (:mod:`streams.faust_ext.stall`; each one also logged as an ERROR);
- one counter per :class:`WorkerCounters` field: ``evalstream_worker_late_events_total``,
  ``…_windows_emitted_total``, ``…_scoring_seconds_total``, ``…_waiting_for_embeddings_seconds_total``,
  ``…_writing_seconds_total`` and the others;
- ``evalstream_worker_alerts_total{state,severity}`` and ``evalstream_worker_alert_deliveries_total{receiver,outcome}``
  (outcome ``delivered``, ``retrying`` or ``gave_up``).

Example::

    >>> from prometheus_client import generate_latest
    >>> metrics = WorkerMetrics(WorkerCounters(late_events=2))
    >>> metrics.count_dead_letter("malformed JSON: Expecting value: line 1 column 1 (char 0)")
    >>> text = generate_latest(metrics.registry).decode()
    >>> [line for line in text.splitlines() if line.startswith("evalstream_worker_dead_letters_total")]
    ['evalstream_worker_dead_letters_total{reason="malformed JSON: Expecting value: line N column N (char N)"} 1.0']
    >>> "evalstream_worker_late_events_total 2.0" in text
    True
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from sinks.status import utc_iso, write_status
from streams.faust_ext.stall import StallDetector
from streams.settings import Settings
from streams.worker.counters import WorkerCounters

if TYPE_CHECKING:
    import faust

    from streams.alerts.agent import AlertAgent
    from streams.alerts.webhooks import DeliveryRecord
    from streams.worker.batch import BatchProcessor, BegunBatch, ScoredBatch

log = logging.getLogger("evalstream.worker")

STATUS_INTERVAL_S = 5.0  # how often the lag is sampled and the status file written
RATE_WINDOW_S = 60.0  # events per second: over about this long
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")
_GOT = re.compile(r"\(got .*?\)")
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0)


def reason_label(reason: str) -> str:
    """A dead-letter reason as a label of few values: numbers become ``N``, ``(got …)`` values and the message of a
    processing error go, and at most 60 characters stay.

    >>> reason_label("type: must be one of generation, edit (got 'gen')")
    'type: must be one of generation, edit (got …)'
    >>> reason_label("processing error: KeyError: 'gen-123'")
    'processing error: KeyError'
    """
    if reason.startswith("processing error: "):
        reason = ": ".join(reason.split(": ")[:2])
    return _NUMBER.sub("N", _GOT.sub("(got …)", reason))[:60]


def _metric_name(field: str) -> str:
    """``seconds_scoring`` -> ``scoring_seconds`` (Prometheus puts the unit last)."""
    return f"{field.removeprefix('seconds_')}_seconds" if field.startswith("seconds_") else field


class _CountersCollector(Collector):
    """Every :class:`WorkerCounters` field as a counter, read at scrape time (the worker keeps counting as before)."""

    def __init__(self, counters: WorkerCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        values = asdict(self.counters)
        for f in fields(WorkerCounters):
            name = _metric_name(f.name)
            yield CounterMetricFamily(f"evalstream_worker_{name}", f"WorkerCounters.{f.name}", value=values[f.name])


class WorkerMetrics:
    """One worker's metrics in a registry of its own (see the module docstring)."""

    def __init__(self, counters: WorkerCounters, registry: CollectorRegistry | None = None) -> None:
        self.counters = counters
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter("evalstream_worker_events", "Messages consumed, by event type", ["type"], registry=r)
        self.dead_letters = Counter("evalstream_worker_dead_letters", "Dead letters by reason", ["reason"], registry=r)
        self.batch_seconds = Histogram(
            "evalstream_worker_batch_seconds", "A batch from its parse to durable Parquet", buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.lag = Gauge("evalstream_worker_consumer_lag", "High watermark minus position", ["partition"], registry=r)
        self.stalled = Gauge("evalstream_worker_stalled_partitions", "Partitions stalled with messages waiting",
                             registry=r)  # fmt: skip
        self.last_batch = Gauge("evalstream_worker_last_batch_timestamp_seconds", "When the last batch was durable",
                                registry=r)  # fmt: skip
        self.alerts = Counter("evalstream_worker_alerts", "Alert state changes", ["state", "severity"], registry=r)
        self.deliveries = Counter(
            "evalstream_worker_alert_deliveries", "Webhook delivery attempts", ["receiver", "outcome"], registry=r
        )
        r.register(_CountersCollector(counters))
        self.last_batch_at: datetime | None = None
        self._server: Any = None

    def count_dead_letter(self, reason: str) -> None:
        self.events.labels("invalid").inc()
        self.dead_letters.labels(reason_label(reason)).inc()

    def on_batch(self, begun: BegunBatch, scored: ScoredBatch) -> None:
        """A batch is durable: count its events by type and its dead letters by reason, time it."""
        types: Tally[str] = Tally()
        for part in scored.parts.values():
            types.update(str(row.get("type")) for row in part.events)
            for row in part.dlq:
                self.count_dead_letter(str(row.get("reason")))
        for kind, n in types.items():
            self.events.labels(kind).inc(n)
        self.batch_seconds.observe(time.perf_counter() - begun.t0)
        self.last_batch_at = datetime.now(UTC)
        self.last_batch.set(self.last_batch_at.timestamp())

    def on_alert(self, record: dict[str, Any]) -> None:
        self.alerts.labels(str(record.get("state")), str(record.get("severity"))).inc()

    def on_delivery(self, record: DeliveryRecord) -> None:
        outcome = "delivered" if record.delivered else "gave_up" if record.final else "retrying"
        self.deliveries.labels(record.receiver, outcome).inc()

    def set_lag(self, lag: dict[int, int]) -> None:
        self.lag.clear()  # partitions this worker lost in a rebalance are no longer its lag
        for partition, value in lag.items():
            self.lag.labels(str(partition)).set(value)

    def serve(self, host: str, port: int) -> bool:
        """Serve ``/metrics`` on ``host:port`` from a thread; False (logged) when the port is taken."""
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.warning("Prometheus metrics not served on %s:%d: %s", host, port, exc)
            return False
        log.info("Prometheus metrics on http://%s:%d/metrics", host, port)
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class StatusReporter:
    """The status file's contents (see :mod:`sinks.status`), with events per second over the last minute."""

    def __init__(self, settings: Settings, counters: WorkerCounters, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.counters = counters
        self.metrics = metrics
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.started_at = utc_iso(datetime.now(UTC))
        self._seen: deque[tuple[float, int]] = deque()

    def events_per_s(self) -> float:
        now, total = time.monotonic(), self.counters.valid + self.counters.dead_lettered
        self._seen.append((now, total))
        while len(self._seen) > 2 and now - self._seen[1][0] >= RATE_WINDOW_S:
            self._seen.popleft()
        first_t, first_n = self._seen[0]
        return round((total - first_n) / (now - first_t), 2) if now > first_t else 0.0

    def status(self, lag: dict[int, int], partitions: list[int], stopped: bool = False) -> dict[str, Any]:
        now = utc_iso(datetime.now(UTC))
        last = self.metrics.last_batch_at
        return {
            "worker_id": self.settings.worker_id, "pid": self.pid, "host": self.host, "updated_at": now,
            "started_at": self.started_at, "stopped_at": now if stopped else None,
            "events_topic": self.settings.events_topic, "partitions": partitions,
            "lag": {str(p): v for p, v in sorted(lag.items())}, "events_per_s": self.events_per_s(),
            "last_batch_at": utc_iso(last) if last else None, "counters": asdict(self.counters),
        }  # fmt: skip

    def write(self, lag: dict[int, int], partitions: list[int], stopped: bool = False) -> None:
        try:
            write_status(self.settings.store, self.status(lag, partitions, stopped))
        except OSError as exc:  # a full disk stops the Parquet writes too, which say so loudly; this one may wait
            log.warning("status file not written: %s", exc)


async def consumer_offsets(app: faust.App, topic: str, timeout_s: float = 5.0) -> tuple[dict[int, int], dict[int, int]]:
    """Per assigned partition of ``topic``: the high watermark (asked of the broker) and the consumer's fetch
    position. The lag is their difference (what is fetched but not yet durable, at most about two batches, is not
    counted; ``evalstream status`` counts from the committed offsets)."""
    consumer = app.consumer
    tps = sorted((tp for tp in consumer.assignment() if tp.topic == topic), key=lambda tp: tp.partition)
    if not tps:
        return {}, {}
    answer = await asyncio.wait_for(consumer.highwaters(*tps), timeout_s)
    highwaters, positions = {}, {}
    for tp in tps:
        position = await asyncio.wait_for(consumer.position(tp), timeout_s)
        if position is not None and answer.get(tp) is not None:
            highwaters[tp.partition], positions[tp.partition] = int(answer[tp]), int(position)
    return highwaters, positions


def install(
    app: faust.App, settings: Settings, counters: WorkerCounters, processor: BatchProcessor,
    alerts: AlertAgent | None = None, stalls: Sequence[StallDetector] = (),
) -> WorkerMetrics:  # fmt: skip
    """Wire the metrics and the status file into the worker's app: hooks, ``/metrics`` and a 5 s timer
    (``stalls``: the detectors of the topics whose offsets the worker owns, which feed them)."""
    metrics = WorkerMetrics(counters)
    processor.observers.append(metrics.on_batch)
    if alerts is not None:
        alerts.on_alert.append(metrics.on_alert)
        alerts.on_delivery.append(metrics.on_delivery)
    reporter = StatusReporter(settings, counters, metrics)

    async def refresh(stopped: bool = False) -> None:
        lag: dict[int, int] = {}
        partitions: list[int] = []
        if not stopped:
            try:
                partitions = sorted(tp.partition for tp in app.consumer.assignment()
                                    if tp.topic == settings.events_topic)  # fmt: skip
                highwaters, positions = await consumer_offsets(app, settings.events_topic)
                lag = {p: max(0, hw - positions[p]) for p, hw in highwaters.items()}
            except Exception as exc:  # not started or assigned yet, or the broker is slow: the next tick tries again
                log.debug("consumer lag not read: %s: %s", type(exc).__name__, exc)
            metrics.set_lag(lag)
            metrics.stalled.set(sum(len(detector.stalled) for detector in stalls))
            counters.stalls = sum(detector.episodes for detector in stalls)
        await asyncio.to_thread(reporter.write, lag, partitions, stopped)

    @app.task  # type: ignore[untyped-decorator]
    async def _start_metrics() -> None:
        if settings.worker_metrics_port:
            metrics.serve(settings.worker_metrics_host, settings.worker_metrics_port)
        await asyncio.to_thread(reporter.write, {}, [])

    @app.timer(interval=STATUS_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def _status() -> None:
        await refresh()

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator,arg-type]
    async def _stopped(sender: Any, **kwargs: Any) -> None:
        await refresh(stopped=True)
        metrics.stop()

    return metrics
