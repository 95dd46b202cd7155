"""What OwnedOffsets commits, without a broker: only a partition's written prefix, offsets without a record
counted as written, nothing past a batch that was admitted but never reported written.

The app is a stand-in that records commits and seeks; the position's start (Kafka's committed offset, read from
the broker in the worker) is given.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from streams.faust_ext.own_offsets import OwnedOffsets

TOPIC = "llm.events"


class Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TP, int]] = []
        self.seeks: list[dict[TP, int]] = []

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        self.commits.append(dict(offsets))
        return True

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        self.seeks.append(dict(offsets))


def _owned(start: int = 0) -> tuple[OwnedOffsets, Consumer]:
    consumer = Consumer()
    owned = OwnedOffsets(SimpleNamespace(consumer=consumer), TOPIC, commit_interval_s=0.0)

    async def committed_offset(partition: int) -> int:
        return start

    owned._start = committed_offset  # type: ignore[method-assign]
    asyncio.run(owned._on_assigned(None, {TP(TOPIC, 0)}))
    return owned, consumer


def _events(*offsets: int) -> list[Any]:
    return [SimpleNamespace(message=SimpleNamespace(topic=TOPIC, partition=0, offset=o)) for o in offsets]


async def _admit(owned: OwnedOffsets, *offsets: int) -> list[bool]:
    return [await owned.admit(event) for event in _events(*offsets)]


def test_commits_follow_the_batches_written_in_order() -> None:
    owned, consumer = _owned(start=100)

    async def run() -> None:
        assert await _admit(owned, 100, 101, 102, 103) == [True] * 4
        await owned.durable(_events(100, 101))
        await owned.durable(_events(102, 103))

    asyncio.run(run())
    assert consumer.commits == [{TP(TOPIC, 0): 102}, {TP(TOPIC, 0): 104}]
    assert owned.committed(0) == 104


def test_nothing_is_committed_past_a_batch_that_was_never_written(caplog: pytest.LogCaptureFixture) -> None:
    """Offsets 5..6 were admitted, but their batch failed and was never reported: the later batch is written,
    yet the partition's commits stop at 5, and one error says so."""
    owned, consumer = _owned()

    async def run() -> None:
        await _admit(owned, *range(10))
        await owned.durable(_events(0, 1, 2, 3, 4))
        await owned.durable(_events(7, 8, 9))
        await _admit(owned, 10)
        await owned.durable(_events(10))  # still stopped; said once

    with caplog.at_level(logging.ERROR, logger="evalstream.worker"):
        asyncio.run(run())
    assert consumer.commits == [{TP(TOPIC, 0): 5}]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "llm.events[0]: offsets 5..6 were admitted but never written; the partition commits nothing past 5 until a "
        "restart replays them"
    ]


def test_offsets_without_a_record_count_as_written() -> None:
    """2..4 hold no record (two re-reads began at 5): the batch from 5 on continues the written prefix."""
    owned, consumer = _owned()

    async def run() -> None:
        assert await _admit(owned, 0, 1) == [True, True]
        await owned.durable(_events(0, 1))
        assert await _admit(owned, 5, 5, 5, 6) == [False, False, True, True]  # seek, seek again, absent, next
        await owned.durable(_events(5, 6))

    asyncio.run(run())
    assert consumer.seeks == [{TP(TOPIC, 0): 2}, {TP(TOPIC, 0): 2}]
    assert consumer.commits == [{TP(TOPIC, 0): 2}, {TP(TOPIC, 0): 7}]
    assert owned.counters.absent_offsets == 3 and owned.counters.reseeks == 2
