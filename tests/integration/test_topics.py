"""ensure_topics against the real broker: the events and DLQ topics, and the tables' changelogs made up front."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from streams.settings import Settings
from streams.topics import changelog_topic, ensure_topics
from streams.worker.app import TABLES

pytestmark = pytest.mark.integration


def test_changelogs_exist_compacted_with_the_events_partitions_before_the_worker_starts(settings: Settings) -> None:
    assert ensure_topics(settings, tables=TABLES) == settings.topic_partitions
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    topics = admin.list_topics(timeout=10).topics
    for table in TABLES:
        name = changelog_topic(settings, table)
        assert len(topics[name].partitions) == settings.topic_partitions, name
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        config = admin.describe_configs([resource])[resource].result(timeout=10)
        assert config["cleanup.policy"].value == "compact"
    assert len(topics[settings.dlq_topic].partitions) == settings.topic_partitions
    # again: nothing to create, the same answer
    assert ensure_topics(settings, tables=TABLES) == settings.topic_partitions
