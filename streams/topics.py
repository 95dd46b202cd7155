"""Create evalstream's topics up front, so the source topic never gets a broker-default partition count.

The worker's join table is co-partitioned with the source topic, so its changelog must have the same number
of partitions; :func:`ensure_topics` returns the count the events topic really has.

Usage (needs a broker)::

    ensure_topics(Settings(bootstrap_servers="127.0.0.1:9092"))   # 6, the events topic's partitions
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import Settings


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
