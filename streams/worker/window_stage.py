"""The live windows in the worker's batches and timer: apply each batch's scores, close what is due, emit it.

A closed window goes to the metrics topic (``llm.metrics``; JSON, keyed by app) and waits there for the evaluator
(:mod:`streams.alerts`), which merges the partitions' parts, writes the ``windows`` dataset and runs the alert
rules. After the windows of a close, a ``closed`` marker per source partition goes to every partition of the
metrics topic: it tells the evaluator that the partition will send nothing more for the windows before ``until``,
so a window is complete once every source partition has said so. A partition that never had a score says once
(per assignment) that it is ``empty``: it holds no window back until it has scores.

The window state is deleted (in the table, flushed with the batch's other state) only after Kafka has acknowledged
the emission: a crash in between emits the window again, which the evaluator replaces by its key.

Usage (in the worker; ``tests/streams/worker/test_window_stage.py`` runs it against a stand-in topic)::

    stage = WindowStage(LiveWindows(table, 60, 120, 15), metrics_topic, source_partitions=6, metrics_partitions=6,
                        assigned=lambda: [0, 1, 2], counters=counters)
    stage.add(part, now)           # per partition of a batch
    await stage.close(now)         # after the batch, and from a timer
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from streams.worker.counters import WorkerCounters
from streams.worker.persist import PartitionBatch
from streams.worker.windows import LiveWindows


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class WindowStage:
    """Applies batches to :class:`LiveWindows` and emits the windows it closes (see the module docstring)."""

    def __init__(
        self,
        live: LiveWindows,
        topic: Any,  # a Faust topic (or anything with an async ``send(key=, value=, partition=)``)
        source_partitions: int,
        metrics_partitions: int,
        assigned: Callable[[], Iterable[int]],
        counters: WorkerCounters,
    ) -> None:
        self.live = live
        self.topic = topic
        self.source_partitions = source_partitions
        self.metrics_partitions = metrics_partitions
        self.assigned = assigned
        self.counters = counters
        self.lock = asyncio.Lock()  # a batch and the timer never close at once
        self._said_empty: set[int] = set()  # partitions reported empty since the last assignment

    def add(self, part: PartitionBatch, now: float) -> None:
        """One batch's score rows of one source partition."""
        before = self.live.late_events
        self.live.add(part.partition, part.scores, part.score_offsets, part.last_offset, now)
        self.counters.late_events += self.live.late_events - before

    def reset(self) -> None:
        """On partition assignment: the windows' index is rebuilt, empty partitions are reported again."""
        self.live.reset()
        self._said_empty.clear()

    async def after_batch(self, parts: Iterable[PartitionBatch], now: float) -> None:
        """Apply a batch (each of its partitions) and emit what it closed."""
        async with self.lock:
            for part in parts:
                self.add(part, now)
            await self._close(now)

    async def tick(self) -> int:
        """From a timer: close what the clocks made due, and send the state's changes (no batch will)."""
        async with self.lock:
            emitted = await self._close(time.time())
            flush = getattr(self.live.table, "flush", None)
            if flush is not None:
                await flush()
            return emitted

    async def _close(self, now: float | None = None) -> int:
        """Emit the windows that are due and wait for Kafka's acknowledgements; returns how many."""
        now = time.time() if now is None else now
        windows = self.live.close(sorted(self.assigned()), now)
        n = self.source_partitions
        sends = [
            await self.topic.send(key=(w.labels.get("app") or "").encode(), value=_json(w.message(n))) for w in windows
        ]
        await asyncio.gather(*sends)
        moved = self.live.closed(windows)
        marks: list[dict[str, Any]] = [
            {"partition": p, "until": until, "watermark": mark} for p, (until, mark) in sorted(moved.items())
        ]
        # a partition that never had a score holds no window back: said once per assignment
        marks += [{"partition": p, "until": None, "empty": True} for p in sorted(self.live.empty - self._said_empty)]
        markers = [
            await self.topic.send(key=None, value=_json({"type": "closed", "partitions": n, **m}), partition=q)
            for m in marks
            for q in range(self.metrics_partitions)
        ]
        await asyncio.gather(*markers)
        self._said_empty |= self.live.empty
        self.counters.windows_emitted += len(windows)
        return len(windows)
