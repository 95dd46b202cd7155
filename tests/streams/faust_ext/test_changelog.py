"""The batched changelog table against a real broker: a batch's table writes reach the changelog once each."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams.faust_ext.changelog import BatchedChangelogTable
from streams.faust_ext.current_event import set_current_event
from streams.settings import Settings
from streams.worker.app import create_app
from tests.helpers import Event, Message, consume_all

pytestmark = pytest.mark.integration


def _read(bootstrap: str, topic: str, partition: int) -> list[tuple[bytes, bytes | None]]:
    return [(m.key(), m.value()) for m in consume_all(bootstrap, topic, [partition])]


def test_a_batch_of_writes_reaches_the_changelog_once_per_key(settings: Settings) -> None:
    settings = settings.model_copy(update={"embed_backend": "off"})
    app = create_app(settings, partitions=2)
    table = app.tables["generations"]
    assert isinstance(table, BatchedChangelogTable)
    topic = table.changelog_topic.get_topic_name()
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    first, second = (Event(Message(settings.events_topic, p, 0, None, b"")) for p in (0, 1))

    async def batch() -> None:
        await app.producer.start()
        try:
            set_current_event(first)  # writes go to the changelog partition of the event being processed
            table["a"] = {"v": 1}
            table["a"] = {"v": 2}  # written twice in the batch: sent once, with the last value
            table["gone"] = {"v": 0}
            set_current_event(second)
            table["b"] = {"v": "ü \ud800"}  # non-ASCII and a lone surrogate, as Faust's JSON codec escapes them
            set_current_event(first)
            del table["gone"]  # a tombstone
            assert table.unflushed == 3 and dict(table.data) == {"a": {"v": 2}, "b": {"v": "ü \ud800"}}
            await table.flush()
            assert table.unflushed == 0
            await table.flush()  # nothing left: sends nothing
        finally:
            await app.producer.stop()

    app.loop.run_until_complete(batch())  # the loop Faust bound its producer to
    p0, p1 = _read(settings.bootstrap_servers, topic, 0), _read(settings.bootstrap_servers, topic, 1)
    assert [(json.loads(k), v and json.loads(v)) for k, v in p0] == [("a", {"v": 2}), ("gone", None)]
    assert [(json.loads(k), v and json.loads(v)) for k, v in p1] == [("b", {"v": "ü \ud800"})]
    # byte for byte what Faust's own changelog writes hold, so its recovery and log compaction treat them alike
    changelog = table.changelog_topic
    assert p0[0] == (changelog.prepare_key("a", None, None)[0], changelog.prepare_value({"v": 2}, None, None)[0])
    assert p1[0][1] == changelog.prepare_value({"v": "ü \ud800"}, None, None)[0]


def test_changelog_records_are_utf8_and_read_back_by_fausts_codec() -> None:
    """Texts in state are written as UTF-8, not \\uXXXX escapes (a 900 kB answer once became a 2.7 MB record that
    Kafka refused); Faust's own codec reads them back; a lone surrogate still makes a valid record (escaped)."""
    from faust.utils.json import loads

    from streams.faust_ext.changelog import _json

    value = {"output": "ü" * 1000, "p": 3}
    record = _json(value)
    assert len(record) < 2100 and loads(record.decode()) == value
    odd = {"output": "cut \ud83d"}
    assert loads(_json(odd).decode()) == odd
