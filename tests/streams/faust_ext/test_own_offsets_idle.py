"""OwnedOffsets' timer, without a broker: partitions whose fetched records never arrived are read again, even when
none of their records arrived since the assignment, and a partition that makes no durable progress is reported.

The stall these guard against was seen in the alerting agent after a restart: Faust's flow control cleared the
agent's input queue at the end of recovery, every record fetched so far from three partitions of the metrics
topic was lost, and as none of them had delivered a record the idle check skipped them: they stalled for good.
The app is a stand-in (fetch positions, high watermarks and seeks recorded); the committed offset is given.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from streams.faust_ext import own_offsets
from streams.faust_ext.own_offsets import OwnedOffsets
from streams.faust_ext.stall import StallDetector

TOPIC = "llm.metrics"


class Consumer:
    def __init__(self, fetched: dict[int, int], highwaters: dict[int, int] | None = None) -> None:
        self.fetched = fetched  # partition -> the fetch position
        self.highwaters_ = highwaters or {}
        self.seeks: list[dict[TP, int]] = []
        self.asked: list[int] = []

    async def position(self, tp: TP) -> int | None:
        self.asked.append(tp.partition)
        return self.fetched.get(tp.partition)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.highwaters_[tp.partition] for tp in tps if tp.partition in self.highwaters_}

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        self.seeks.append(dict(offsets))
        for tp, offset in offsets.items():
            self.fetched[tp.partition] = offset

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        return True


def _owned(consumer: Consumer, partitions: set[int], committed: int = 0, **kwargs: Any) -> OwnedOffsets:
    app = SimpleNamespace(consumer=consumer, rebalancing=False, in_recovery=False,
                          flow_control=SimpleNamespace(is_active=lambda: True))  # fmt: skip
    owned = OwnedOffsets(app, TOPIC, commit_interval_s=3600.0, **kwargs)

    async def start(partition: int) -> int:
        owned._committed[partition] = committed
        return committed

    owned._start = start  # type: ignore[method-assign]
    asyncio.run(owned._on_assigned(None, {TP(TOPIC, p) for p in partitions}))
    return owned


def _event(partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=TOPIC, partition=partition, offset=offset))


def test_a_partition_none_of_whose_records_arrived_is_read_again_from_its_committed_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Partition 0 had offsets 5..39 fetched (committed 5) and nothing delivered: it is read again from 5, and
    those records are then admitted. Partition 1 had nothing fetched past its committed offset: left alone."""
    consumer = Consumer(fetched={0: 40, 1: 5})
    owned = _owned(consumer, {0, 1}, committed=5, idle_s=0.0)

    async def run() -> list[bool]:
        await owned.tick()
        return [await owned.admit(_event(0, o)) for o in (5, 6, 7)]

    with caplog.at_level(logging.WARNING, logger="evalstream.worker"):
        admitted = asyncio.run(run())
    assert consumer.seeks == [{TP(TOPIC, 0): 5}]
    assert "llm.metrics[0]: offsets 5..39 were fetched but never delivered; reading them again" in caplog.text
    assert owned.counters.reseeks == 1
    assert admitted == [True, True, True]


def test_an_idle_partition_is_asked_for_its_fetch_position_once_per_idle_period() -> None:
    """Nothing to read again: the broker is not asked every second (the timer ran late behind the fetches)."""
    consumer = Consumer(fetched={0: 5})
    owned = _owned(consumer, {0}, committed=5, idle_s=0.3)

    async def run() -> None:
        for _ in range(4):  # 0.0 .. 0.15 s: inside the first idle period
            await owned.tick()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        for _ in range(3):  # past it: one check, then again inside the next period
            await owned.tick()

    asyncio.run(run())
    assert consumer.asked == [0]
    assert consumer.seeks == []


def test_the_idle_period_counts_from_the_end_of_recovery_not_from_the_assignment() -> None:
    """Restoring the tables took longer than the idle period: records fetched in the first second after recovery
    are on their way, not lost, and are not read again (the soak test's restarted workers re-read 10 of 26 times
    when the period counted from the assignment)."""
    consumer = Consumer(fetched={0: 5})
    owned = _owned(consumer, {0}, committed=5, idle_s=0.2)

    async def run() -> None:
        owned.app.in_recovery = True
        await owned.tick()
        await asyncio.sleep(0.3)  # the idle period since the assignment is over, inside recovery
        await owned.tick()
        owned.app.in_recovery = False
        consumer.fetched[0] = 900  # the flow resumed: a fetch is being delivered
        await owned.tick()
        assert consumer.seeks == []
        await asyncio.sleep(0.25)  # nothing delivered for the idle period since the flow resumed: lost after all
        await owned.tick()

    asyncio.run(run())
    assert consumer.seeks == [{TP(TOPIC, 0): 5}]


def test_the_idle_period_counts_from_the_timers_first_tick_not_from_the_assignment() -> None:
    """Faust starts app timers only once the first recovery is over (``App.on_started``): the timer saw none of it,
    and records fetched as the flow resumed are on their way, not lost (the soak's restarted workers re-read 3 times
    in 26, 1.1-1.4 s after "Worker ready", with the period counted from the assignment)."""
    consumer = Consumer(fetched={0: 5})
    owned = _owned(consumer, {0}, committed=5, idle_s=0.2)

    async def run() -> None:
        await asyncio.sleep(0.3)  # restoring the tables: the timer has not started
        consumer.fetched[0] = 900  # the flow resumed: a fetch is being delivered
        await owned.tick()  # the timer's first tick
        assert consumer.seeks == []
        await asyncio.sleep(0.25)  # nothing delivered for the idle period since then: lost after all
        await owned.tick()

    asyncio.run(run())
    assert consumer.seeks == [{TP(TOPIC, 0): 5}]


def test_a_partition_with_records_waiting_and_no_durable_progress_is_reported_stalled_by_topic(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With a stall detector (0.2 s): 30 records wait on partition 2 (committed 10, high watermark 40) and nothing
    becomes durable: STALLED, naming the topic; once a batch is durable, it moves again. Partition 3 is caught up."""
    monkeypatch.setattr(own_offsets, "STALL_CHECK_S", 0.0)
    consumer = Consumer(fetched={2: 10, 3: 7}, highwaters={2: 40, 3: 7})
    owned = _owned(consumer, {2, 3}, committed=10, idle_s=3600.0, stalls=StallDetector(0.2, TOPIC))
    owned._committed.update({2: 10, 3: 7})  # read from Kafka as the assignment began

    async def run() -> None:
        await owned.tick()  # no durable batch yet: the committed offset stands in; the clock starts
        await owned.admit(_event(2, 10))  # the position starts at the committed offset
        await asyncio.sleep(0.25)
        await owned.tick()
        assert owned.stalls is not None and owned.stalls.stalled == {2}
        await owned.admit(_event(2, 11))
        await owned.durable([_event(2, 10), _event(2, 11)])
        await owned.tick()

    with caplog.at_level(logging.WARNING, logger="evalstream.worker"):
        asyncio.run(run())
    assert "STALLED: llm.metrics[2] has 30 messages waiting (offsets 10..39)" in caplog.text
    assert "llm.metrics[2] moves again (durable up to offset 11)" in caplog.text
    assert "llm.metrics[3]" not in caplog.text
    assert owned.stalls is not None and owned.stalls.stalled == set() and owned.stalls.episodes == 1
