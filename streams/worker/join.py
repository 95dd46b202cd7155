"""The generation join: each generation's labels and output, kept in a Faust table until it expires.

Edits, feedback and regenerates refer to a generation by ``generation_id``. Events are keyed by ``session_id``,
so a generation and its follow-ups share a source partition, and the table is co-partitioned with the source
topic: every write goes to the changelog partition of the event being processed.

Expiry (processing time): a generation stays joinable for ``ttl_s`` seconds after the worker processed it. Each
partition keeps a heap of expiry times; :meth:`GenerationJoin.expire` deletes what is due (a tombstone in the
compacted changelog, so state stays bounded across restarts too). After a (re)assignment the heap of a partition
is rebuilt from the restored table the first time that partition is seen.

Faust's windowed tables were not used: their expiry runs on wall-clock windows, writes no tombstones, and keys
restored from the changelog after a restart are never expired (faust-streaming 0.15.3, ``tables/base.py``).

Example (with a plain dict standing in for the Faust table)::

    >>> join = GenerationJoin({}, ttl_s=60)
    >>> from streams.worker.scoring import GenerationRef
    >>> join.remember(GenerationRef("g1", "app", "route", "m", "v1", "text"), partition=0, now=1000.0)
    >>> join.lookup("g1").output
    'text'
    >>> join.lookup("g1", now=1061.0) is None  # its time is up, though not yet deleted
    True
    >>> join.expire(0, now=1061.0)
    1
    >>> join.lookup("g1") is None
    True
"""

from __future__ import annotations

import heapq
from collections.abc import MutableMapping
from typing import Any

from streams.faust_ext.changelog import BatchedChangelogTable
from streams.worker.scoring import GenerationRef


def _due(value: dict[str, Any], now: float) -> bool:
    """Whether a stored value's time is up at ``now``."""
    return bool(value.get("exp", 0.0) <= now)


class ExpiringTable:
    """Dict values in a Faust table, each deleted ``ttl_s`` seconds (processing time) after its last write."""

    def __init__(self, table: MutableMapping[str, Any], ttl_s: float) -> None:
        self.table = table
        self.ttl_s = ttl_s
        self._heaps: dict[int, list[tuple[float, str]]] = {}

    def reset(self) -> None:
        """Forget the expiry heaps (call on partition assignment); they are rebuilt lazily."""
        self._heaps.clear()

    def _heap(self, partition: int) -> list[tuple[float, str]]:
        heap = self._heaps.get(partition)
        if heap is None:
            heap = [
                (value["exp"], key)
                for key, value in list(self.table.items())
                if isinstance(value, dict) and value.get("p") == partition
            ]
            heapq.heapify(heap)
            self._heaps[partition] = heap
        return heap

    def put(self, key: str, value: dict[str, Any], partition: int, now: float) -> None:
        expires = now + self.ttl_s
        self._write(key, {**value, "p": partition, "exp": expires}, partition)
        heapq.heappush(self._heap(partition), (expires, key))

    def get(self, key: str, now: float | None = None) -> dict[str, Any] | None:
        """The value of ``key``; None when absent, or when its time is up at ``now`` though not yet deleted."""
        value = self.table.get(key)
        if not value or (now is not None and _due(value, now)):
            return None
        return {k: v for k, v in value.items() if k not in ("p", "exp")}

    def due(self, partition: int, now: float, limit: int = 10_000) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``limit`` keys of ``partition`` whose time is up, with their values (taken off the expiry heap:
        the caller deletes them, or writes them again with a new expiry)."""
        heap = self._heap(partition)
        found: dict[str, dict[str, Any]] = {}
        while heap and heap[0][0] <= now and len(found) < limit:
            _, key = heapq.heappop(heap)
            value = self.table.get(key)
            # a key written again later has a newer expiry (and its own heap entry)
            if value and _due(value, now):
                found[key] = value
        return list(found.items())

    def expire(self, partition: int, now: float, limit: int = 10_000) -> int:
        """Delete up to ``limit`` keys of ``partition`` whose time is up; returns how many."""
        due = self.due(partition, now, limit)
        for key, _ in due:
            self._delete(key, partition)
        return len(due)

    def _write(self, key: str, value: dict[str, Any], partition: int) -> None:
        """``table[key] = value``; on a Faust table, straight to its changelog partition (the source's: the tables
        are co-partitioned), not through Faust's per-write lookup of the current event."""
        if isinstance(self.table, BatchedChangelogTable):
            self.table.set_at(key, value, partition)
        else:
            self.table[key] = value

    def _delete(self, key: str, partition: int) -> None:
        if isinstance(self.table, BatchedChangelogTable):
            self.table.del_at(key, partition)
        else:
            del self.table[key]


class GenerationJoin(ExpiringTable):
    """The generations, by ``generation_id``."""

    def remember(self, ref: GenerationRef, partition: int, now: float) -> None:
        self.put(ref.generation_id, ref.to_dict(), partition, now)

    def lookup(self, generation_id: str, now: float | None = None) -> GenerationRef | None:
        """The generation, unless unknown or expired at ``now`` (expiry deletes it only once per batch)."""
        value = self.get(generation_id, now)
        return None if value is None else GenerationRef.from_dict(value)
