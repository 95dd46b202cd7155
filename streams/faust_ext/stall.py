"""Stall detection: a partition with messages waiting that makes no durable progress is reported, loudly.

Once, in CI, a replacement worker restored its tables, logged that it was ready and then received nothing for
minutes (one cause, found later: Faust's flow control cleared an agent's input queue at the end of recovery,
:mod:`streams.faust_ext.patches`). Whatever the cause, a worker that stops consuming must not look healthy: every
few seconds the worker compares, per assigned partition of the events topic (and the alerting agent, of the
metrics topic: :class:`streams.faust_ext.own_offsets.OwnedOffsets`), the broker's high watermark with the offset
up to which its batches are durable. A partition is *stalled* when messages wait (high watermark above that
offset) and the offset has not moved for ``after_s`` seconds (time spent restoring tables or rebalancing does
not count). The worker then logs an ERROR naming the partition, the messages waiting and the offsets, repeats it
every ``after_s`` while the stall lasts, counts it (``stalls``; Prometheus ``evalstream_worker_stalls_total`` and
the gauge ``evalstream_worker_stalled_partitions``), and logs when the partition moves again.

Example (offsets and times passed in; the worker feeds it from its consumer every 5 s)::

    >>> detector = StallDetector(after_s=60)
    >>> detector.durable(3, 1000)                     # a batch of partition 3 is durable up to offset 999
    >>> detector.check({3: 1500}, {3: 1000}, now=0.0)  # 500 waiting: the clock starts
    []
    >>> [(s.partition, s.waiting, s.idle_s) for s in detector.check({3: 1600}, {3: 1000}, now=61.0)]
    [(3, 600, 61.0)]
    >>> detector.durable(3, 1200)
    >>> detector.check({3: 1600}, {3: 1200}, now=62.0), detector.stalled
    ([], set())
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("evalstream.worker")


@dataclass(frozen=True)
class Stall:
    """A partition found stalled by one check."""

    partition: int
    waiting: int  # messages between the durable offset and the high watermark
    idle_s: float  # since the durable offset last moved (or the partition was assigned)
    durable: int  # the next offset after the last durable batch (the fetch position before any batch)
    highwater: int


class StallDetector:
    """Per partition: the durable offset, and since when it has not moved (see the module docstring)."""

    def __init__(self, after_s: float, topic: str | None = None) -> None:
        self.after_s = after_s
        self.topic = topic  # named in the log lines (the worker's events topic is not: "partition 3")
        self._durable: dict[int, int] = {}
        self._since: dict[int, float | None] = {}  # partition -> since when it waits with no progress (None: not)
        self._marker: dict[int, int] = {}
        self._reported: dict[int, float] = {}  # partition -> when its stall was last logged
        self.stalled: set[int] = set()
        self.episodes = 0  # stalls begun since the worker started (kept across assignments)

    def reset(self) -> None:
        """Forget everything (call on partition assignment: positions and owners changed)."""
        self._durable.clear()
        self._since.clear()
        self._marker.clear()
        self._reported.clear()
        self.stalled.clear()

    def durable(self, partition: int, next_offset: int) -> None:
        """A batch of ``partition`` is durable up to ``next_offset - 1``."""
        self._durable[partition] = max(next_offset, self._durable.get(partition, next_offset))

    def pause(self, now: float) -> None:
        """Restoring tables or rebalancing: no partition can progress, and none is stalled meanwhile."""
        for partition, since in self._since.items():
            if since is not None:
                self._since[partition] = now

    def check(self, highwaters: Mapping[int, int], starts: Mapping[int, int], now: float) -> list[Stall]:
        """The assigned partitions (``highwaters``' keys) stalled at ``now``; logs new, ongoing and ended stalls.

        ``starts`` (per partition, its committed offset, or the fetch position when none is committed) stand in for
        a partition that has had no durable batch yet: not the fetch position alone, which reaches the high
        watermark once everything is fetched, processed or not.
        """
        for partition in set(self._since) - set(highwaters):  # no longer assigned here
            for state in (self._since, self._marker, self._reported, self._durable):
                state.pop(partition, None)
            self.stalled.discard(partition)
        found = []
        for partition, highwater in sorted(highwaters.items()):
            marker = self._durable.get(partition, starts.get(partition))
            if marker is None:
                continue
            if self._marker.get(partition) != marker or highwater <= marker:
                # progress, or nothing waiting: the clock restarts (when messages are first seen waiting)
                self._marker[partition] = marker
                self._since[partition] = now if highwater > marker else None
                if partition in self.stalled:
                    self.stalled.discard(partition)
                    self._reported.pop(partition, None)
                    log.warning("%s moves again (durable up to offset %d)", self._name(partition), marker - 1)
                continue
            since = self._since.get(partition)
            if since is None:
                self._since[partition] = since = now
            idle = now - since
            if idle < self.after_s:
                continue
            stall = Stall(partition, highwater - marker, round(idle, 1), marker, highwater)
            found.append(stall)
            if partition not in self.stalled or now - self._reported.get(partition, now) >= self.after_s:
                log.error(
                    "STALLED: %s has %d messages waiting (offsets %d..%d) and nothing became durable for %.0f s; "
                    "check the log above for write errors, and the broker; a restart replays from the committed "
                    "offset",
                    self._name(partition), stall.waiting, marker, highwater - 1, idle,
                )  # fmt: skip
                self._reported[partition] = now
            if partition not in self.stalled:
                self.episodes += 1
            self.stalled.add(partition)
        return found

    def _name(self, partition: int) -> str:
        return f"{self.topic}[{partition}]" if self.topic else f"partition {partition}"
