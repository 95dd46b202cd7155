"""``evalstream compact``: the worker's committed offsets from Kafka, and :mod:`sinks.compaction` below them.

Only messages below the consumer group's committed offset are never replayed, so only their files may be
merged (a replay deletes the files whose offset range overlaps its own). The offsets come from the group
``EVALSTREAM_WORKER_ID`` for the events topic; a partition the group never committed is left alone.

Usage (needs a broker; ``tests/integration/test_compaction_cli.py`` runs it)::

    compact_committed(Settings())          # once
    evalstream compact --every 600         # from the command line, every ten minutes
"""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, TopicPartition

from sinks.compaction import CompactionReport, compact
from streams.settings import Settings
from streams.topics import TopicError


def committed_offsets(settings: Settings, timeout_s: float = 30.0) -> dict[tuple[str, int], int]:
    """The worker group's committed offset per partition of the events topic (partitions without one left out)."""
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers, "group.id": settings.worker_id,
        "enable.auto.commit": False,
    })  # fmt: skip
    try:
        meta = consumer.list_topics(settings.events_topic, timeout=timeout_s).topics.get(settings.events_topic)
        if meta is None or meta.error is not None:
            raise TopicError(f"topic {settings.events_topic} not found at {settings.bootstrap_servers}")
        wanted = [TopicPartition(settings.events_topic, p) for p in meta.partitions]
        done = consumer.committed(wanted, timeout=timeout_s)
    except KafkaException as exc:
        raise TopicError(f"cannot read the committed offsets of {settings.worker_id}: {exc}") from exc
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in done if tp.offset >= 0}


def compact_committed(settings: Settings, min_age_s: float = 3600) -> CompactionReport:
    """Compact the data folder's files below the worker group's committed offsets."""
    return compact(settings.store, committed_offsets(settings), min_age_s)
