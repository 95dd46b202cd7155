"""Create evalstream's topics up front, so the source topic never gets a broker-default partition count.

The worker's join table is co-partitioned with the source topic, so its changelog must have the same number
of partitions; :func:`ensure_topics` returns the count the events topic really has.

Usage (needs a broker)::

    ensure_topics(Settings(bootstrap_servers="127.0.0.1:9092"))   # 6, the events topic's partitions
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import Settings


class TopicError(RuntimeError):
    """Kafka refused or did not answer a topic operation."""


def changelog_topic(settings: Settings, table: str) -> str:
    """The changelog topic Faust uses for a table of the worker's app."""
    return f"{settings.worker_id}-{table}-changelog"


def _create(admin: AdminClient, topics: list[NewTopic], timeout_s: float) -> None:
    if not topics:
        return
    for topic, future in admin.create_topics(topics, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                continue  # another process won the race
            raise TopicError(f"cannot create topic {topic}: {exc}") from exc


# A table's value holds texts (a generation's output for the edit join, recent outputs for novelty): room for
# records well past Kafka's default 1 MB (the worker's producer is allowed as much)
MAX_STATE_RECORD_BYTES = 16 * 1024 * 1024


def ensure_topics(settings: Settings, timeout_s: float = 30.0, tables: tuple[str, ...] = ()) -> int:
    """Create the events and DLQ topics when missing, the metrics and alerts topics and the compacted changelog
    topics of ``tables`` with as many partitions as the events topic; return the partition count of the events
    topic.

    Faust would create the changelogs itself, but on a broker that has just started their metadata can lag
    behind the worker's first batch, whose table writes then fail (seen once in a fresh demo): made here, before
    the worker starts, they exist when it does.
    """
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise TopicError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc
    wanted = [settings.events_topic, settings.dlq_topic]
    room = {settings.dlq_topic: {"max.message.bytes": str(MAX_STATE_RECORD_BYTES)}}  # a message + its reason
    _create(admin, [NewTopic(t, num_partitions=settings.topic_partitions, config=room.get(t, {})) for t in wanted
                    if t not in existing], timeout_s)  # fmt: skip
    meta = admin.list_topics(topic=settings.events_topic, timeout=timeout_s)
    partitions = len(meta.topics[settings.events_topic].partitions)
    # the metrics topic is co-partitioned with the events topic: the alerting agent's table lives beside them
    derived = [settings.metrics_topic, settings.alerts_topic]
    _create(admin, [NewTopic(t, num_partitions=partitions) for t in derived if t not in existing], timeout_s)
    changelogs = [changelog_topic(settings, t) for t in tables]
    config = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_STATE_RECORD_BYTES)}
    _create(admin, [NewTopic(t, num_partitions=partitions, config=config) for t in changelogs if t not in existing],
            timeout_s)  # fmt: skip
    if changelogs:  # wait until the broker's metadata shows them, as the worker's consumer will ask it
        deadline = time.monotonic() + timeout_s
        while not all(t in admin.list_topics(timeout=timeout_s).topics for t in changelogs):
            if time.monotonic() > deadline:
                raise TopicError(f"the changelog topics did not appear within {timeout_s:g} s")
            time.sleep(0.1)
    return partitions
