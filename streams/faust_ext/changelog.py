"""A Faust table whose changelog writes leave once per batch, in bulk, instead of one message at a time.

Faust sends every ``table[key] = value`` to the table's changelog topic at once, through its per-message
machinery (a future message, the producer buffer, ``Topic.publish_message``, aiokafka's ``send``, a delivery
callback and sensors). The worker writes about two table entries per event, and that path took roughly a
third of its busy event loop. :class:`BatchedChangelogTable` keeps Faust's table
(reads, recovery from the changelog, partition assignment) and only changes when and how the writes leave:
``on_key_set`` / ``on_key_del`` record ``(partition, key, value)``; :meth:`BatchedChangelogTable.flush` (called
once per batch, before the batch's offsets may commit) serializes them exactly as Faust does (its JSON codec;
``None`` for a deleted key, a tombstone) and appends them to one aiokafka record batch per changelog partition.
A key written several times in one batch is sent once, with its last value (the changelog is compacted: only the
last value of a key counts). The worker's tables are in memory (``store="memory://"``), restored from the
changelog at start-up; with RocksDB, Faust would also record each write's offset ("persisted offset") so that
a restart reads less of the changelog, which these writes do not do.

Usage (in a Faust app, which needs a broker; ``tests/streams/faust_ext/test_changelog.py`` runs it)::

    table = app.tables.add(BatchedChangelogTable(app, name="generations", default=None,
                                                 beacon=app.tables.beacon, partitions=6))
    table["g1"] = {"output": "..."}
    await table.flush()   # the batch's writes are in Kafka

Example (the bytes of a changelog record: key and value as Faust's ``json`` codec writes them)::

    >>> _json("g1"), _json({"output": "hi", "ts": 1.5})
    (b'"g1"', b'{"output":"hi","ts":1.5}')
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust import Table
from faust.utils.json import dumps


def _json(value: Any) -> bytes:
    """What Faust's ``json`` codec reads back (``faust.serializers.codecs.json``), as UTF-8: texts in state (long
    outputs) are not escaped to ``\\uXXXX``, which made a record up to 6× its text and too large for Kafka."""
    try:
        text = dumps(value, ensure_ascii=False)
        return text.encode() if isinstance(text, str) else bytes(text)
    except UnicodeEncodeError:  # a lone surrogate (the worker replaces them on input): escaped, as Faust would
        text = dumps(value)
        return text.encode() if isinstance(text, str) else bytes(text)


class BatchedChangelogTable(Table):  # type: ignore[misc]
    """A Faust table whose changelog writes are sent by :meth:`flush` (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[tuple[int, Any], Any] = {}  # (partition, key) -> last value written, None: deleted

    def _partition(self, key: Any) -> int:
        partition = self.partition_for_key(key)  # the current event's partition (co-partitioned with the source)
        if partition is None:
            raise TypeError(f"table {self.name}: no partition for key {key!r} (a table with use_partitioner?)")
        return int(partition)

    def _record(self, key: Any, value: Any) -> None:
        where = (self._partition(key), key)
        self._pending.pop(where, None)  # re-inserted last: the order of last writes is kept
        self._pending[where] = value

    def on_key_set(self, key: Any, value: Any) -> None:
        self._record(key, value)
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        self._record(key, None)  # a tombstone
        self._sensor_on_del(self, key)

    def set_at(self, key: Any, value: Any, partition: int) -> None:
        """``table[key] = value`` outside of an event (a timer): its changelog partition is given, not looked up."""
        self.data[key] = value
        self._pending.pop((partition, key), None)
        self._pending[(partition, key)] = value

    def del_at(self, key: Any, partition: int) -> None:
        """``del table[key]`` outside of an event, on the changelog partition given."""
        self.data.pop(key, None)
        self._pending.pop((partition, key), None)
        self._pending[(partition, key)] = None

    @property
    def unflushed(self) -> int:
        """Writes recorded and not yet sent."""
        return len(self._pending)

    async def flush(self) -> None:
        """Send every recorded write and wait until Kafka has them all (raises if a send fails)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        faust_producer: Any = self.app.producer
        producer = faust_producer._ensure_producer()  # aiokafka's AIOKafkaProducer under Faust's producer
        topic = self.changelog_topic.get_topic_name()
        deliveries = []
        batches: dict[int, Any] = {}
        for (partition, key), value in pending.items():
            key_bytes = _json(key)
            value_bytes = None if value is None else _json(value)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key_bytes, value=value_bytes, timestamp=None) is None:  # full: send it, start another
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[partition] = producer.create_batch()
                if batch.append(key=key_bytes, value=value_bytes, timestamp=None) is None:
                    raise ValueError(f"a {self.name} changelog record of {len(value_bytes or b'')} bytes does not fit")
        for partition, batch in batches.items():
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*deliveries)
