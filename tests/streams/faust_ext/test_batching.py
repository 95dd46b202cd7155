"""Overlapped batching on Faust's real stream machinery (an in-memory channel, no broker): batch N+1 is gathered
while the caller holds batch N, batches stay bounded, and no event is acked before the caller says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
import pytest

from streams.faust_ext.batching import ack_events, take_events_overlapped


async def _eventually(condition: Callable[[], bool], limit_s: float = 10.0) -> bool:
    """Let the event loop run until ``condition`` holds (True) or ``limit_s`` passed (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _stream_of(values: list[int]) -> tuple[Any, list[int]]:
    """A started Faust stream over an in-memory channel holding ``values``, and the list its acks go to."""
    app = faust.App("evalstream-test-batching", broker="kafka://127.0.0.1:1", web_enabled=False)
    app.flow_control.resume()  # as a running worker's is
    channel = app.channel()
    stream = app.stream(channel)
    acked: list[int] = []

    async def ack(event: Any) -> bool:
        acked.append(event.value)
        return True

    stream.ack = ack
    for value in values:
        await channel.send(value=value)
    await stream.start()
    return stream, acked


def test_the_next_batch_is_gathered_while_the_caller_holds_this_one() -> None:
    async def run() -> None:
        stream, acked = await _stream_of(list(range(7)))
        batches = take_events_overlapped(stream, 3, 5.0, ack=False)
        first = await batches.__anext__()
        assert [e.value for e in first] == [0, 1, 2]
        # while batch 1 is held (not acked), the reader drains the channel: batch 2 fills up (3 events) and the
        # reader holds the 7th until there is room (batch 2 below is exactly 3, 4, 5)
        assert await _eventually(lambda: stream.channel.queue.qsize() == 0)
        assert acked == []
        second = await batches.__anext__()
        assert [e.value for e in second] == [3, 4, 5] and acked == []
        await ack_events(stream, first)
        assert acked == [0, 1, 2]
        third = await batches.__anext__()  # a partial batch, after `within` seconds at most
        assert [e.value for e in third] == [6]
        await ack_events(stream, second)
        await ack_events(stream, third)
        assert acked == list(range(7))  # each event acked once, in order
        await batches.aclose()
        await stream.stop()

    asyncio.run(run())


def test_fausts_own_take_events_stops_reading_while_a_batch_is_processed() -> None:
    """Why the extension exists: with ``take_events`` nothing is gathered while the caller holds a batch."""

    async def run() -> int:
        stream, _ = await _stream_of(list(range(7)))
        batches = stream.take_events(3, within=5.0).__aiter__()
        await batches.__anext__()
        await _eventually(lambda: stream.channel.queue.qsize() < 4, limit_s=1.0)  # a second, to be sure
        left = stream.channel.queue.qsize()
        await stream.stop()
        return left

    assert asyncio.run(run()) == 4


@pytest.mark.parametrize("held", [1, 2])
def test_with_ack_on_a_batch_is_acked_once_the_caller_asks_for_the_next(held: int) -> None:
    async def run() -> list[list[int]]:
        stream, acked = await _stream_of(list(range(6)))
        batches = take_events_overlapped(stream, 3, 5.0)
        seen = []
        for _ in range(held):
            await batches.__anext__()
            seen.append(list(acked))
        await batches.aclose()
        await stream.stop()
        return seen

    assert asyncio.run(run()) == [[], [0, 1, 2]][:held]
