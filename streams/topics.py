"""Create evalstream's topics up front, so the source topic never gets a broker-default partition count.

The worker's join table is co-partitioned with the source topic, so its changelog must have the same number
of partitions; :func:`ensure_topics` returns the count the events topic really has.

Example::

    >>> ensure_topics(Settings(bootstrap_servers="127.0.0.1:9092"))   # doctest: +SKIP
    6
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import Settings

log = logging.getLogger("evalstream.topics")


class TopicError(RuntimeError):
    """Kafka refused or did not answer a topic operation."""


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> int:
    """Create the events and DLQ topics when missing; return the partition count of the events topic."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise TopicError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc
    wanted = [settings.events_topic, settings.dlq_topic]
    missing = [NewTopic(t, num_partitions=settings.topic_partitions) for t in wanted if t not in existing]
    if missing:
        for topic, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    continue  # another process won the race
                raise TopicError(f"cannot create topic {topic}: {exc}") from exc
    meta = admin.list_topics(topic=settings.events_topic, timeout=timeout_s)
    return len(meta.topics[settings.events_topic].partitions)


def ensure_committed_offsets(settings: Settings, partitions: int, timeout_s: float = 30.0) -> int:
    """Commit the earliest offset for every events partition the worker's group has never committed.

    Why: faust-streaming 0.15.3 + aiokafka 0.14, on a start that restores table state, fetches records before
    "seek stream partitions to committed offsets"; where the group has no committed offset that seek is a
    no-op and the prefetched records are discarded, so they are never processed (seen here: the records
    after the first batch vanished). With a committed offset the seek rewinds and nothing is lost.
    Same semantics as ``auto.offset.reset=earliest``. Returns how many partitions were initialised.
    """
    topic = settings.events_topic
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.worker_id,
        "enable.auto.commit": False,
    })  # fmt: skip
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=timeout_s)
        fresh = []
        for tp in committed:
            if tp.offset < 0:
                low, _ = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout_s)
                fresh.append(TopicPartition(topic, tp.partition, low))
        if fresh:
            consumer.commit(offsets=fresh, asynchronous=False)
        return len(fresh)
    except KafkaException as exc:  # e.g. the group is active elsewhere: its members commit
        log.warning("could not initialise committed offsets of group %s: %s", settings.worker_id, exc)
        return 0
    finally:
        consumer.close()
