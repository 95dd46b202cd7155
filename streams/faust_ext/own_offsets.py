"""The worker, not Faust, decides which offsets of its input topic are committed: only what it processed, in order.

Why: faust-streaming 0.15.3 loses records at rebalances. ``Consumer.getmany`` stops mid-fetch when the flow
stops, and ``_drain_messages`` abandons a record waiting on ``suspend_flow``; either way the fetch position has
moved past records never delivered. Faust then relies on a seek to the committed offset, which skips partitions
with no committed offset, while its read-offset check drops re-fetched records as already read and its gap
tracking lets commits pass them. The crash tests lost up to 3,708 of 200,048 events that way
(``docs/architecture.md``, "Offsets the worker commits itself").

What :class:`OwnedOffsets` does instead, for one topic:

- every delivered record is checked against the partition's :class:`~streams.faust_ext.positions.Position`
  (:meth:`OwnedOffsets.admit`): the next offset is processed; one delivered before is dropped; one past a gap
  is dropped and the partition read again from the next offset (``seek_wait``);
- a partition's position starts at the offset committed in Kafka, or at the log's start when none is;
- offsets are committed (every ``commit_interval_s``, at a revocation and at shutdown) only up to what was
  admitted in order and reported durable (:meth:`OwnedOffsets.durable`), batch after batch with no hole (a batch
  never reported stops the partition's commits, with an error); Faust no longer commits this topic (its ``ack``
  still counts the message done, so a rebalance and a shutdown still wait for the batches);
- a partition whose fetched records never arrive (position past the next offset, nothing delivered for
  ``idle_s`` while the stream's queue is empty) is read again from the next offset; that holds for a partition
  none of whose records arrived since its assignment too (its next offset is then the committed one). The idle
  period counts only time the timer watched with the flow on: not a rebalance, a recovery, nor the first recovery
  (Faust starts app timers only once it is over);
- with a :class:`~streams.faust_ext.stall.StallDetector`, a partition with records waiting whose durable offset
  does not move for its ``after_s`` is logged as ``STALLED``, whatever the cause.

The agent takes its batches through :meth:`OwnedOffsets.batches`, which also takes its stream's input queue: the
idle check watches it, and Faust's flow control no longer clears that queue when a recovery ends
(:func:`streams.faust_ext.patches.keep_stream_queue_on_resume`; the records in it were lost for good, and a
partition none of whose records then arrived stalled: seen in the alerting agent, whose queue was not kept).

Private Faust API used: ``Consumer._read_offset``, ``Consumer.ack``, ``Consumer._unacked_messages``,
``Consumer._waiting_for_ack``, ``Consumer._commit``, ``Consumer._thread`` (the aiokafka consumer's ``committed``).

Usage (in :func:`streams.worker.app.create_app`; ``tests/streams/faust_ext/test_own_offsets.py`` runs it on
a real broker)::

    owned = OwnedOffsets(app, "llm.events", commit_interval_s=2.8, counters=counters, stalls=StallDetector(120))
    owned.install()  # before the app starts
    ...
    async for batch in owned.batches(stream, 1000, 2.0):  # in the agent
        ...
    await owned.durable(batch)  # once the batch is written
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Iterable
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from faust.types import TP, EventT
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.faust_ext.batching import take_events_overlapped
from streams.faust_ext.patches import keep_stream_queue_on_resume
from streams.faust_ext.positions import Position, Verdict
from streams.faust_ext.stall import StallDetector

log = logging.getLogger("evalstream.worker")

STALL_CHECK_S = 5.0  # how often the high watermarks are asked for, with stall detection on


class _ReadOffsets(dict):  # type: ignore[type-arg]
    """Faust's read offsets, blind for owned topics: its drain then delivers every record it fetches from them."""

    def __init__(self, owned: set[str], existing: Any) -> None:
        super().__init__(existing)
        self.owned = owned

    def __getitem__(self, tp: Any) -> Any:
        if tp.topic in self.owned:
            return None
        return dict.get(self, tp)


class OwnedOffsets:
    """One topic's positions and commits, taken over from Faust (see the module docstring)."""

    def __init__(
        self, app: Any, topic: str, commit_interval_s: float, counters: Any = None, idle_s: float = 10.0,
        stalls: StallDetector | None = None,
    ) -> None:  # fmt: skip
        self.app = app
        self.topic = topic
        self.commit_interval_s = commit_interval_s
        # ints redelivered, reseeks, absent_offsets (the worker's WorkerCounters; default: kept here)
        self.counters = (
            counters if counters is not None else SimpleNamespace(redelivered=0, reseeks=0, absent_offsets=0)
        )
        self.idle_s = idle_s
        self.queue: Any = None  # the stream's input queue (set by the agent): records in it are on their way
        self._assigned: set[int] = set()
        self._epoch = 0
        self._positions: dict[int, Position] = {}
        self._committed: dict[int, int] = {}  # the offset Kafka holds (a replay starts there)
        self._written: dict[int, int] = {}  # every admitted record before this offset is written
        self._jumps: dict[int, dict[int, int]] = {}  # offsets that hold no record: from -> the next record's
        self._holes: set[int] = set()  # partitions whose commits stopped at a batch never written
        # since when the idle check has had no news of a partition: its last delivery, its last check, the end of a
        # rebalance or recovery, or the timer's first tick (nothing is delivered meanwhile: no sign of records lost)
        self._quiet_since: dict[int, float] = {}
        self._ticked = False  # Faust starts app timers only once the first recovery is over (App.on_started)
        self._last_commit = time.monotonic()
        self._lock = asyncio.Lock()
        self.stalls = stalls
        self._stalls_checked = time.monotonic()

    # -- setup ---------------------------------------------------------------------------------------------------

    def install(self) -> None:
        """Take the topic's offsets over from the app's consumer; call once, before the app starts."""
        consumer = self.app.consumer
        reads = consumer._read_offset
        if not isinstance(reads, _ReadOffsets):
            reads = consumer._read_offset = _ReadOffsets(set(), reads)
            self._wrap_ack(consumer, reads.owned)
        reads.owned.add(self.topic)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)
        self.app.on_before_shutdown.connect(self._on_shutdown)
        self.app.timer(interval=1.0, name=f"own_offsets.tick:{self.topic}")(self.tick)

    @staticmethod
    def _wrap_ack(consumer: Any, owned: set[str]) -> None:
        faust_ack = consumer.ack

        def ack(message: Any) -> bool:  # done for the stream and for wait_empty; never a commit by Faust
            if message.topic not in owned:
                return bool(faust_ack(message))
            with ack_lock:
                if message.acked:
                    return False
                message.acked = True
                consumer._unacked_messages.discard(message)
                notify(consumer._waiting_for_ack)
                return True

        consumer.ack = ack

    # -- what the worker calls -----------------------------------------------------------------------------------

    def batches(self, stream: Any, max_: int, within: float) -> AsyncGenerator[list[EventT], None]:
        """The agent's batches of admitted records (:func:`take_events_overlapped`, ``ack=False``: the agent acks
        each batch with :func:`~streams.faust_ext.batching.ack_events` after :meth:`durable`). The stream's input
        queue is watched by the idle check and no longer cleared by Faust's flow control when a recovery ends
        (records in it would be lost for good)."""
        self.queue = stream.channel.queue
        if keep_stream_queue_on_resume(self.app, stream):
            log.info("%s: input queue kept out of flow-control clearing (see streams/faust_ext/patches.py)", self.topic)
        return take_events_overlapped(stream, max_, within, ack=False, admit=self.admit)

    def committed(self, partition: int) -> int | None:
        """Where a replay of ``partition`` would start (the committed offset, else the log's start); None: unknown."""
        return self._committed.get(partition)

    async def admit(self, event: EventT) -> bool:
        """Whether to process ``event``: only its partition's next record (see the module docstring)."""
        message = event.message
        if message.topic != self.topic:
            return True
        partition, offset = message.partition, message.offset
        if partition not in self._assigned:
            return False  # fetched before a revocation
        position = self._positions.get(partition)
        if position is None:
            epoch = self._epoch
            start = await self._start(partition)
            if epoch != self._epoch or partition not in self._assigned:
                return False  # a rebalance came meanwhile: this record belongs to the old assignment
            position = self._positions.setdefault(partition, Position(start))
            self._written.setdefault(partition, start)
        new, verdict = position.admit(offset)
        self._positions[partition] = new
        self._quiet_since[partition] = time.monotonic()
        if verdict is Verdict.DUPLICATE:
            self.counters.redelivered += 1
        elif verdict is Verdict.ABSENT:
            self.counters.absent_offsets += offset - position.next
            self._jumps.setdefault(partition, {})[position.next] = offset
            log.warning(
                "%s[%d]: offsets %d..%d hold no record (read twice; transaction markers, or deleted by retention "
                "before they were processed)", self.topic, partition, position.next, offset - 1,
            )  # fmt: skip
        elif verdict is Verdict.SEEK:
            self.counters.reseeks += 1
            log.warning(
                "%s[%d]: offset %d delivered while %d was expected: the consumer dropped records; reading them "
                "again from %d", self.topic, partition, offset, position.next, position.next,
            )  # fmt: skip
            await self._seek(partition, new.next)
        return verdict.admitted

    async def durable(self, events: Iterable[EventT]) -> None:
        """``events`` (a batch admitted earlier) are written: their offsets may be committed (when a commit is due).

        Only a partition's written prefix is committed: a batch that starts past the end of the last one
        reported (one that failed and was never reported) stops the partition's commits there, with an error.
        """
        spans: dict[int, tuple[int, int]] = {}
        for event in events:
            message = event.message
            if message.topic == self.topic:
                first, end = spans.get(message.partition, (message.offset, message.offset + 1))
                spans[message.partition] = (min(first, message.offset), max(end, message.offset + 1))
        for partition, (first, end) in spans.items():
            position, written = self._positions.get(partition), self._written.get(partition)
            if partition not in self._assigned or position is None or written is None or end > position.next:
                continue
            jumps = self._jumps.get(partition, {})
            while written in jumps:  # offsets that hold no record count as written
                written = jumps.pop(written)
            if first > written:
                if partition not in self._holes:
                    self._holes.add(partition)
                    log.error(
                        "%s[%d]: offsets %d..%d were admitted but never written; the partition commits nothing past "
                        "%d until a restart replays them", self.topic, partition, written, first - 1, written,
                    )  # fmt: skip
                self._written[partition] = written
                continue
            self._written[partition] = written = max(written, end)
            if self.stalls is not None:
                self.stalls.durable(partition, written)
            for start in [k for k in jumps if k < written]:  # passed inside this batch
                del jumps[start]
        await self._commit_if_due()

    async def _commit_if_due(self) -> None:
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            await self.commit()

    async def commit(self, partitions: Iterable[int] | None = None) -> None:
        """Commit what is written (of ``partitions``; default all assigned)."""
        async with self._lock:
            wanted = self._assigned if partitions is None else set(partitions) & self._assigned
            offsets = {p: end for p, end in self._written.items() if p in wanted and end > self._committed.get(p, -1)}
            self._last_commit = time.monotonic()
            if not offsets:
                return
            done = await self.app.consumer._commit({TP(self.topic, p): end for p, end in offsets.items()})
            if done:
                self._committed.update(offsets)

    async def tick(self) -> None:
        """Every second: a due commit, stalls (every 5 s), and partitions whose fetched records never arrived are read
        again."""
        await self._commit_if_due()
        now = time.monotonic()
        unwatched = not self._ticked  # the first tick: the time restoring the tables went unwatched, it does not count
        self._ticked = True
        app = self.app
        stopped = app.rebalancing or not app.flow_control.is_active() or getattr(app, "in_recovery", False)
        if unwatched or stopped:
            for partition in self._assigned:
                self._quiet_since[partition] = now
        if stopped:
            if self.stalls is not None:
                self.stalls.pause(now)
            return
        if self.stalls is not None and now - self._stalls_checked >= STALL_CHECK_S:
            self._stalls_checked = now
            await self._check_stalls(self.stalls, now)
        if self.queue is not None and not self.queue.empty():
            return
        for partition in sorted(self._assigned):
            if now - self._quiet_since.get(partition, now) < self.idle_s:
                continue
            self._quiet_since[partition] = now  # asked once per idle period (each ask waits behind a fetch)
            position = self._positions.get(partition)
            if position is None:  # nothing delivered since the assignment: maybe every record fetched was lost
                position = await self._first_position(partition)
                if position is None:
                    continue
            try:
                fetched = await self.app.consumer.position(TP(self.topic, partition))
            except Exception:  # revoked meanwhile
                continue
            current = self._positions.get(partition)
            if fetched is None or current is not position or fetched <= position.next:
                continue
            self._positions[partition] = position.restarted(fetched - 1)
            self.counters.reseeks += 1
            log.warning(
                "%s[%d]: offsets %d..%d were fetched but never delivered; reading them again",
                self.topic, partition, position.next, fetched - 1,
            )  # fmt: skip
            await self._seek(partition, position.next)

    async def _first_position(self, partition: int) -> Position | None:
        """The position of a partition none of whose records was delivered yet: its committed offset (None if the
        partition was revoked meanwhile)."""
        epoch = self._epoch
        start = await self._start(partition)
        if epoch != self._epoch or partition not in self._assigned:
            return None
        self._written.setdefault(partition, start)
        return self._positions.setdefault(partition, Position(start))

    async def _check_stalls(self, stalls: StallDetector, now: float) -> None:
        tps = [TP(self.topic, p) for p in sorted(self._assigned)]
        if not tps:
            return
        try:
            answer = await asyncio.wait_for(self.app.consumer.highwaters(*tps), 10.0)
        except Exception as exc:  # not assigned yet, or the broker is slow: the next check tries again
            log.debug("%s: high watermarks not read: %s: %s", self.topic, type(exc).__name__, exc)
            return
        highwaters = {tp.partition: int(hw) for tp, hw in answer.items() if hw is not None}
        stalls.check(highwaters, dict(self._committed), now)

    # -- internals -----------------------------------------------------------------------------------------------

    async def _start(self, partition: int) -> int:
        """The offset Kafka holds for the group, else the log's start (what the consumer resets to); retried
        while the broker does not answer (the partition's records wait meanwhile)."""
        consumer = self.app.consumer
        thread = consumer._thread
        aiotp = TopicPartition(self.topic, partition)
        for attempt in itertools.count():
            try:
                offset = await thread.call_thread(thread._ensure_consumer().committed, aiotp)
                if offset is None or offset < 0:
                    earliest = await consumer.earliest_offsets(TP(self.topic, partition))
                    offset = int(next(iter(earliest.values()), 0) or 0)
                break
            except Exception as exc:
                if attempt % 10 == 0:
                    log.warning(
                        "%s[%d]: committed offset not read (%s: %s); retrying",
                        self.topic, partition, type(exc).__name__, exc,
                    )  # fmt: skip
                await asyncio.sleep(1.0)
        self._committed[partition] = int(offset)
        return int(offset)

    async def _seek(self, partition: int, offset: int) -> None:
        try:
            await self.app.consumer.seek_wait({TP(self.topic, partition): offset})
        except Exception as exc:  # revoked meanwhile: the next assignment starts from the committed offset
            log.warning("%s[%d]: seek to %d failed (%s: %s)", self.topic, partition, offset, type(exc).__name__, exc)

    def _per_partition(self) -> tuple[dict[int, Any], ...]:
        return self._positions, self._committed, self._quiet_since, self._written, self._jumps

    def _parts(self, tps: Iterable[Any]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.topic}

    async def _on_revoked(self, sender: Any, revoked: Any, **kwargs: Any) -> None:
        parts = self._parts(revoked)  # Faust has waited for the batches in flight: commit them while still ours
        await self.commit(parts)
        self._epoch += 1
        self._assigned -= parts
        self._holes -= parts
        for state in self._per_partition():
            for p in parts:
                state.pop(p, None)

    async def _on_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        self._epoch += 1
        parts = self._parts(assigned)
        for state in self._per_partition():
            for p in list(state):
                if p not in parts:
                    state.pop(p)
        now = time.monotonic()
        for p in parts - self._assigned:  # starts afresh from the committed offset
            for state in self._per_partition():
                state.pop(p, None)
            self._holes.discard(p)
            self._quiet_since[p] = now
        self._holes &= parts
        self._assigned = parts
        if self.stalls is not None:
            self.stalls.reset()

    async def _on_shutdown(self, sender: Any, **kwargs: Any) -> None:
        try:
            await self.commit()
        except Exception as exc:  # replayed after the restart instead
            log.warning("commit at shutdown failed (%s: %s)", type(exc).__name__, exc)
