"""Live windows in the worker: event-time windows with a grace period, late scores counted, replays not applied
twice, state restored from the table, quiet partitions moved on by the others' watermark and by the time they have
been quiet (never by jumping to the wall clock), empty partitions holding nothing up."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.windows import ClosedWindow, LiveWindows

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
NOW = (T0 + timedelta(days=1)).timestamp()  # the wall clock, well after the scores' time


def row(seconds: float, value: float = 1.0, metric: str = "thumbs_up", route: str = "answer") -> dict[str, Any]:
    ts = (T0 + timedelta(seconds=seconds)).replace(tzinfo=None)
    return {"ts": ts, "app": "chat", "route": route, "model": "m", "prompt_version": "v1", "index_version": None,
            "component": None, "metric": metric, "value": value}  # fmt: skip


def start_of(seconds: int) -> int:
    return int(T0.timestamp()) + seconds


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def closed(live: LiveWindows, partitions: list[int], now: float = NOW) -> list[ClosedWindow]:
    windows = live.close(partitions, now)
    live.closed(windows)
    return windows


def test_a_window_closes_only_once_the_watermark_is_grace_past_its_end() -> None:
    live = LiveWindows({}, width_s=60, grace_s=120, idle_s=3600)
    live.add(0, [row(1, 1.0), row(30, 0.0), row(59, 1.0)], [0, 1, 2], 2, NOW)
    live.add(0, [row(179)], [3], 3, NOW)  # watermark 10:02:59 < 10:01 + 120 s
    assert closed(live, [0]) == []
    live.add(0, [row(180)], [4], 4, NOW)  # 10:03:00: the first window is due
    [window] = closed(live, [0])
    agg = window.metrics["thumbs_up"]
    assert (window.start, agg.count, agg.sum, agg.low, agg.high) == (start_of(0), 3, 2.0, 0.0, 1.0)
    assert window.message(6)["end"] == start_of(60) and window.message(6)["partitions"] == 6
    assert closed(live, [0]) == []  # emitted once


def test_late_scores_inside_the_grace_period_change_their_window_later_ones_are_counted() -> None:
    live = LiveWindows({}, width_s=60, grace_s=60, idle_s=3600)
    live.add(0, [row(10, 1.0), row(100, 1.0)], [0, 1], 1, NOW)  # watermark 10:01:40
    live.add(0, [row(50, 0.0)], [2], 2, NOW)  # its window [10:00, 10:01) is open until 10:02: it counts
    live.add(0, [row(125)], [3], 3, NOW)  # watermark 10:02:05: the first window closes
    [first] = closed(live, [0])
    assert (first.metrics["thumbs_up"].count, first.metrics["thumbs_up"].sum) == (2, 1.0)
    live.add(0, [row(20, 0.0), row(30, 0.0, metric="latency_ms")], [4, 5], 5, NOW)  # too late: counted, not added
    assert live.late_events == 2
    live.add(0, [row(400)], [6], 6, NOW)
    windows = {w.start: w for w in closed(live, [0])}
    second = windows[start_of(60)]  # the window that was open when they came holds the count
    assert second.metrics["thumbs_up"].late == 1 and second.metrics["thumbs_up"].count == 1
    assert second.metrics["latency_ms"].late == 1 and second.metrics["latency_ms"].count == 0


def test_scores_far_in_the_future_are_late_and_do_not_move_the_watermark() -> None:
    live = LiveWindows({}, width_s=60, grace_s=60, idle_s=3600)
    now = start_of(300)
    live.add(0, [row(10), row(86_400 * 365)], [0, 1], 1, now)
    assert live.marker(0)["w"] == start_of(10) and live.late_events == 1


def test_a_replayed_batch_is_not_applied_twice_even_when_cut_differently() -> None:
    table: dict[str, Any] = {}
    live = LiveWindows(table, width_s=60, grace_s=0, idle_s=3600)
    rows = [row(i, float(i % 2)) for i in range(10)]
    live.add(0, rows[:6], list(range(6)), 5, NOW)
    restarted = LiveWindows(table, width_s=60, grace_s=0, idle_s=3600)  # a new process, the same table
    restarted.add(0, rows[3:], list(range(3, 10)), 9, NOW)  # replay from offset 3, cut at another place
    restarted.add(0, [row(61)], [10], 10, NOW)
    [window] = closed(restarted, [0])
    agg = window.metrics["thumbs_up"]
    assert (agg.count, agg.sum) == (10, 5.0)


def test_the_state_survives_a_restart_and_is_bounded_by_closing() -> None:
    table: dict[str, Any] = {}
    live = LiveWindows(table, width_s=60, grace_s=0, idle_s=3600)
    for minute in range(10):
        live.add(0, [row(minute * 60 + 1, route=r) for r in ("a", "b")], [2 * minute, 2 * minute + 1],
                 2 * minute + 1, NOW)  # fmt: skip
        closed(live, [0])
    open_keys = [k for k in table if k.startswith("w|")]
    assert len(open_keys) == 2  # only the last minute's two groups are held
    restarted = LiveWindows(table, width_s=60, grace_s=0, idle_s=3600)
    restarted.add(0, [row(601)], [20], 20, NOW)
    assert sorted(w.labels["route"] for w in closed(restarted, [0])) == ["a", "b"]


def test_a_quiet_partition_follows_the_busy_ones_then_moves_by_its_quiet_time() -> None:
    clock = Clock()
    live = LiveWindows({}, width_s=60, grace_s=0, idle_s=10, clock=clock)
    live.add(1, [row(5)], [0], 0, NOW)  # partition 1 gets one score, then nothing
    clock.t = 11
    live.add(0, [row(10), row(200)], [0, 1], 1, NOW)  # partition 0 moves on
    windows = closed(live, [0, 1, 2])
    assert [(w.partition, w.start) for w in windows] == [(0, start_of(0)), (1, start_of(0))]
    assert live.empty == {2}  # never had a score: nothing to close, it holds nothing up
    # the stream stops; the last window [3:00, 4:00) closes once the partition has been quiet 40 s more
    clock.t = 11 + 30
    assert closed(live, [0, 1]) == []
    clock.t = 11 + 41
    assert [(w.partition, w.start) for w in closed(live, [0, 1])] == [(0, start_of(180))]


def test_a_quiet_partition_never_moves_past_the_wall_clock_and_a_later_backfill_is_on_time() -> None:
    clock = Clock()
    live = LiveWindows({}, width_s=60, grace_s=0, idle_s=10, clock=clock)
    clock.t = 3600  # quiet for an hour before anything comes: no watermark to move, nothing closes
    assert closed(live, [0]) == [] and live.empty == {0}
    live.add(0, [row(10), row(70)], [0, 1], 1, NOW)  # history, a day old
    assert live.late_events == 0
    clock.t = 3600 + 7200
    now = start_of(100)  # the wall clock just after the data: the watermark stops there
    assert [w.start for w in closed(live, [0], now=now)] == [start_of(0)]
    assert live.marker(0)["c"] == start_of(60)


def test_closed_reports_the_new_marks_for_the_markers() -> None:
    live = LiveWindows({}, width_s=60, grace_s=0, idle_s=3600)
    live.add(2, [row(70)], [0], 0, NOW)
    windows = live.close([2], NOW)
    assert windows == [] and live.closed(windows) == {2: (start_of(60), start_of(70))}
    assert live.closed([]) == {}  # nothing moved since


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        LiveWindows({}, width_s=0, grace_s=0, idle_s=1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 599), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=80),
    st.lists(st.integers(1, 20), min_size=1, max_size=10),
)
def test_in_order_scores_land_in_their_windows_exactly_whatever_the_batches(
    points: list[tuple[int, float]], cuts: list[int]
) -> None:
    points.sort()
    clock = Clock()
    live = LiveWindows({}, width_s=60, grace_s=0, idle_s=3600, clock=clock)
    emitted: list[ClosedWindow] = []
    i, c = 0, 0
    while i < len(points):
        size = cuts[c % len(cuts)]
        chunk = points[i : i + size]
        live.add(0, [row(s, v) for s, v in chunk], list(range(i, i + len(chunk))), i + len(chunk) - 1, NOW)
        emitted += closed(live, [0])
        i, c = i + len(chunk), c + 1
    clock.t = 10**7  # quiet for long: every window closes
    emitted += closed(live, [0])
    by_window = {w.start: w.metrics["thumbs_up"] for w in emitted}
    for start in {start_of(s // 60 * 60) for s, _ in points}:
        values = [v for s, v in points if start_of(s // 60 * 60) == start]
        agg = by_window[start]
        assert agg.count == len(values) and agg.sum == math.fsum(values) and agg.late == 0
    assert len(emitted) == len(by_window)  # each window once
