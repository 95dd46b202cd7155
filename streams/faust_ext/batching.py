"""Batches from a Faust stream, gathered while the previous batch is still being processed.

Faust's ``Stream.take_events(max, within)`` stops its background reader while the caller processes a batch:
the next batch is only assembled (each event delivered through the stream, deserialized, buffered) after the
previous one returns. With a model that keeps every core busy during a batch, that delivery becomes a serial
pause between batches, during which the model idles (figure in ``bench/README.md``).

:func:`take_events_overlapped` is the same contract with a second buffer: while the caller holds batch N,
the reader fills batch N+1 (up to ``max_`` events, then it waits). Events are acked only after the caller is
done with their batch, exactly as with ``take_events`` (or, with ``ack=False``, when the caller says so with
:func:`ack_events`, which lets it hold two batches at once): Faust commits an offset only once every earlier
offset of its partition is acked, so offsets never run ahead of what was processed (and written).

Usage (in a Faust agent, which needs a broker; ``tests/integration/test_pipeline.py`` runs it)::

    async def agent(stream):
        async for batch in take_events_overlapped(stream, 1000, 2.0):
            await process(batch)  # batch N+1 is being gathered meanwhile
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from faust.types import EventT, StreamT
from mode.utils.aiter import aiter


async def take_events_overlapped(
    stream: StreamT,
    max_: int,
    within: float,
    ack: bool = True,
    admit: Callable[[EventT], Awaitable[bool]] | None = None,
) -> AsyncGenerator[list[EventT], None]:
    """Yield lists of at most ``max_`` events, one at least every ``within`` seconds while events arrive.

    With ``ack=False`` the caller acks each batch itself (:func:`ack_events`) once it is done with it, which
    may be after it has asked for the next batch. ``admit``, when given, is asked about each event as it is
    delivered: one it refuses is acked at once and left out of the batches.
    """
    gathering: list[EventT] = []
    full = asyncio.Event()
    room = asyncio.Event()
    room.set()
    s: Any = stream  # Faust's private parts used below are the ones take_events itself uses

    async def add_to_buffer(value: Any) -> Any:
        try:
            event = s.current_event
            if event is None:
                raise RuntimeError("batch buffer found current_event is None")
            if admit is not None and not await admit(event):
                await s.ack(event)
                return value
            while len(gathering) >= max_ and not s.should_stop:
                room.clear()  # the next batch is full: wait until the caller takes it
                await s.wait(room)
            gathering.append(event)
            if len(gathering) >= max_:
                full.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            s.log.exception("Error adding to batch buffer: %r", exc)
            await s.crash(exc)
        return value

    enable_acks = s.enable_acks
    s.enable_acks = False  # acked below, once the caller is done with the batch
    s.add_processor(add_to_buffer)
    s._enable_passive(aiter(s.channel))
    try:
        while not s.should_stop:
            await s.wait_for_stopped(full, timeout=within)
            if not gathering:
                continue
            batch = list(gathering)
            gathering.clear()
            full.clear()
            room.set()  # the reader may gather the next batch while this one is processed
            try:
                yield batch
            finally:
                if ack:
                    await ack_events(stream, batch)
    finally:
        s.enable_acks = enable_acks
        s._processors.remove(add_to_buffer)


async def ack_events(stream: StreamT, events: Sequence[EventT]) -> None:
    """Ack a batch taken with ``ack=False`` (every event exactly once, after the caller is done with it)."""
    s: Any = stream
    for event in events:
        await s.ack(event)
