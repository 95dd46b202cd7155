"""Live windows: every score aggregated per tumbling event-time window and group, per source partition.

A window is ``[start, start + width)`` of the scores' own time (``ts``), per group (app, route, model, prompt and
index versions, component) and metric: count, exact sum, min, max and a KLL sketch (:mod:`metrics.windows`). Faust's
windowed tables expire by wall-clock time with no grace period; these do not:

- Each source partition has a *watermark*: the latest score time it has seen (never past the wall clock). A window
  closes once the watermark is ``grace_s`` past its end. A partition quiet for ``idle_s`` (wall clock) moves on: to
  the other partitions' latest watermark, and by the time it has been quiet (never past the wall clock), so the
  last windows of a stream that stops close too, and a backfill that comes later is not made late by the clock.
  A partition that never had a score has nothing to close; the stage reports it as empty, so it holds nothing up.
- A score whose window has closed (or that is more than ``grace_s`` in the future) is *late*: it is stored and
  scored as usual, and counted as ``late`` in the partition's window that is open when it arrives.
- The state (a Faust table, restored after a restart) holds the open windows and, per partition, a marker: the last
  offset applied, the watermark and the time before which every window is closed. Scores from offsets at or below
  the marker are a replay and are not applied twice; a closed window's state is deleted only after its emission
  is acknowledged, so a crash in between emits it again (the consumers replace by window key).

Example (a plain dict stands in for the table; windows of 60 s with 30 s of grace)::

    >>> from datetime import datetime
    >>> rows = [{"ts": datetime(2026, 11, 30, 10, 0, s), "app": "chat", "route": "answer", "model": "m",
    ...          "prompt_version": "v1", "index_version": None, "component": None, "metric": "thumbs_up",
    ...          "value": v} for s, v in ((1, 1.0), (20, 0.0), (59, 1.0))]
    >>> live = LiveWindows({}, width_s=60, grace_s=30, idle_s=10)
    >>> live.add(0, rows, [5, 6, 7], last_offset=7, now=2e9)
    >>> live.close([0], now=2e9)   # the watermark (10:00:59) is not 30 s past 10:01
    []
    >>> later = {**rows[0], "ts": datetime(2026, 11, 30, 10, 1, 40), "value": 0.0}
    >>> live.add(0, [later], [8], last_offset=8, now=2e9)
    >>> [(w.start, w.metrics["thumbs_up"].count, w.metrics["thumbs_up"].sum) for w in live.close([0], 2e9)]
    [(1796032800, 3, 2.0)]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from metrics.windows import WindowAggregate, window_start

GROUP_LABELS = ("app", "route", "model", "prompt_version", "index_version", "component")


@dataclass(frozen=True)
class ClosedWindow:
    """One partition's aggregates of one group in one window, ready to emit."""

    partition: int
    start: int
    width: int
    labels: dict[str, str | None]
    metrics: dict[str, WindowAggregate]
    key: str  # its state key, deleted once the emission is acknowledged

    def message(self, partitions: int) -> dict[str, Any]:
        """The ``llm.metrics`` message (JSON; keyed by app, so all of an app's windows meet in one place)."""
        return {
            "type": "window", "partition": self.partition, "partitions": partitions, "start": self.start,
            "end": self.start + self.width, "labels": self.labels,
            "metrics": {name: agg.to_dict() for name, agg in sorted(self.metrics.items())},
        }  # fmt: skip


def _epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).timestamp()


def _write(table: MutableMapping[str, Any], key: str, value: Any, partition: int) -> None:
    setter = getattr(table, "set_at", None)  # a BatchedChangelogTable outside of an event (a timer)
    if setter is not None:
        setter(key, value, partition)
    else:
        table[key] = value


def _delete(table: MutableMapping[str, Any], key: str, partition: int) -> None:
    deleter = getattr(table, "del_at", None)
    if deleter is not None:
        deleter(key, partition)
    else:
        table.pop(key, None)


class LiveWindows:
    """The open windows and watermarks of the partitions this worker holds (see the module docstring)."""

    def __init__(
        self,
        table: MutableMapping[str, Any],
        width_s: int,
        grace_s: float,
        idle_s: float,
        counters: Any = None,
        clock: Callable[[], float] = time.monotonic,  # how long partitions have been quiet (tests pass their own)
    ) -> None:
        if width_s <= 0 or grace_s < 0 or idle_s <= 0:
            raise ValueError("need width_s > 0, grace_s >= 0 and idle_s > 0")
        self.table = table
        self.width = int(width_s)
        self.grace = float(grace_s)
        self.idle_s = float(idle_s)
        self.counters = counters
        self.clock = clock
        self.late_events = 0  # messages with late scores, since start
        self._open: dict[int, dict[str, int]] | None = None  # partition -> open state keys -> window start
        self._seen: dict[int, float] = {}  # partition -> monotonic time of its last scores
        self._due: dict[int, tuple[int, float]] = {}  # partition -> (closed mark, watermark) found by close()
        self._started = self.clock()
        self.empty: set[int] = set()  # partitions (of the last close) that never had a score

    def reset(self) -> None:
        """Forget the in-memory index (call on partition assignment; it is rebuilt from the table)."""
        self._open = None
        self._seen.clear()
        self._started = self.clock()

    def _index(self) -> dict[int, dict[str, int]]:
        if self._open is None:
            self._open = {}
            for key, value in list(self.table.items()):
                if isinstance(key, str) and key.startswith("w|") and isinstance(value, dict):
                    self._open.setdefault(int(value["p"]), {})[key] = int(value["s"])
        return self._open

    def marker(self, partition: int) -> dict[str, Any]:
        """``{"o": last offset applied, "w": watermark, "c": every window ending at or before it is closed}``."""
        value = self.table.get(f"m|{partition}")
        return dict(value) if value else {"o": -1, "w": None, "c": None}

    def add(
        self, partition: int, rows: Sequence[dict[str, Any]], offsets: Sequence[int], last_offset: int, now: float
    ) -> None:
        """Apply one batch's score rows of ``partition`` (``offsets[i]``: the message ``rows[i]`` came from)."""
        marker = self.marker(partition)
        applied, closed, watermark = marker["o"], marker["c"], marker["w"]
        if last_offset <= applied:
            return  # the whole batch is a replay
        index = self._index().setdefault(partition, {})
        # per (window start, labels...): the start, the labels, values per metric, late counts per metric
        values: dict[tuple[Any, ...], tuple[int, dict[str, Any], dict[str, list[float]], dict[str, int]]] = {}
        late_offsets = set()
        for row, offset in zip(rows, offsets, strict=True):
            if offset <= applied:
                continue
            value = row["value"]
            if value is None or not math.isfinite(value):
                continue
            at = _epoch(row["ts"])
            start = window_start(at, self.width)
            if (closed is not None and start + self.width <= closed) or at > now + self.grace:
                start, late = (closed if closed is not None else window_start(now, self.width)), True
            else:
                late = False
                watermark = at if watermark is None else max(watermark, min(at, now))
            group = (start, *(row[name] for name in GROUP_LABELS))
            entry = values.get(group)
            if entry is None:
                labels = dict(zip(GROUP_LABELS, group[1:], strict=True))
                entry = values[group] = (start, labels, {}, {})
            if late:
                entry[3][row["metric"]] = entry[3].get(row["metric"], 0) + 1
                late_offsets.add(offset)
            else:
                entry[2].setdefault(row["metric"], []).append(float(value))
        for start, labels, by_metric, late_by_metric in values.values():
            key = f"w|{partition}|{start}|{json.dumps(labels, sort_keys=True, separators=(',', ':'))}"
            current = self.table.get(key)
            metrics = {name: WindowAggregate.from_dict(d) for name, d in (current or {}).get("m", {}).items()}
            for name in by_metric.keys() | late_by_metric.keys():
                agg = metrics.get(name, WindowAggregate()).update_many(by_metric.get(name, ()))
                metrics[name] = agg.add_late(late_by_metric[name]) if name in late_by_metric else agg
            state = {"p": partition, "s": start, "g": labels, "m": {n: a.to_dict() for n, a in metrics.items()}}
            _write(self.table, key, state, partition)
            index[key] = start
        _write(self.table, f"m|{partition}", {"o": last_offset, "w": watermark, "c": closed}, partition)
        self.late_events += len(late_offsets)
        if values:
            self._seen[partition] = self.clock()

    def close(self, partitions: Iterable[int], now: float) -> list[ClosedWindow]:
        """The windows of ``partitions`` that are due (not yet forgotten: call :meth:`closed` once emitted).

        A partition quiet for ``idle_s`` (no scores in this process for that long) moves on: to the latest
        watermark of the others, and by the time it has been quiet, never past the wall clock ``now``. A partition
        that never had a score has nothing to close: it is listed in :attr:`empty` instead.
        """
        partitions = list(partitions)
        markers = {p: self.marker(p) for p in partitions}
        known = [m["w"] for m in markers.values() if m["w"] is not None]
        latest = max(known) if known else None
        mono = self.clock()
        self.empty = {p for p, m in markers.items() if m["w"] is None}
        out = []
        for partition, marker in markers.items():
            watermark = marker["w"]
            if watermark is None:
                continue
            quiet = mono - self._seen.get(partition, self._started)
            if quiet >= self.idle_s:
                watermark = min(max(watermark + quiet, latest or watermark), max(now, watermark))
            limit = window_start(watermark - self.grace, self.width)
            if marker["c"] is not None and limit <= marker["c"]:
                continue
            for key, start in sorted(self._index().get(partition, {}).items(), key=lambda kv: kv[1]):
                if start + self.width <= limit:
                    state = self.table[key]
                    metrics = {n: WindowAggregate.from_dict(d) for n, d in state["m"].items()}
                    out.append(ClosedWindow(partition, start, self.width, dict(state["g"]), metrics, key))
            self._due[partition] = (limit, watermark)
        return out

    def closed(self, windows: Sequence[ClosedWindow]) -> dict[int, tuple[int, float]]:
        """Forget ``windows`` (their emission is acknowledged) and advance the partitions' closed marks; returns,
        per partition whose mark moved, the time before which all its windows are now closed and its watermark."""
        index = self._index()
        for window in windows:
            _delete(self.table, window.key, window.partition)
            index.get(window.partition, {}).pop(window.key, None)
        moved = {}
        for partition, (limit, watermark) in self._due.items():
            marker = self.marker(partition)
            marker["c"], marker["w"] = limit, watermark if marker["w"] is None else max(marker["w"], watermark)
            _write(self.table, f"m|{partition}", marker, partition)
            moved[partition] = (limit, marker["w"])
        self._due = {}
        return moved
