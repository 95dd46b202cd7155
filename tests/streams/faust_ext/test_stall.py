"""The stall detector: messages waiting and no durable progress for ``after_s`` is a stall, logged until it ends."""

from __future__ import annotations

import logging

import pytest

from streams.faust_ext.stall import StallDetector


def test_a_partition_is_stalled_only_with_messages_waiting_and_no_progress_for_the_whole_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector = StallDetector(after_s=30)
    with caplog.at_level(logging.WARNING, logger="evalstream.worker"):
        assert detector.check({0: 100, 1: 50}, {0: 100, 1: 10}, now=0.0) == []  # 0 caught up; 1 has 40 waiting
        assert detector.check({0: 900, 1: 50}, {0: 100, 1: 10}, now=29.0) == []  # not yet 30 s for either
        stalls = detector.check({0: 900, 1: 50}, {0: 100, 1: 10}, now=31.0)
    # partition 0 was caught up at 0 s: its clock started when messages began to wait (29 s)
    assert [(s.partition, s.waiting, s.durable, s.highwater) for s in stalls] == [(1, 40, 10, 50)]
    assert detector.stalled == {1} and detector.episodes == 1
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "STALLED: partition 1 has 40 messages waiting (offsets 10..49)" in caplog.text


def test_a_stall_is_repeated_every_after_s_counted_once_and_its_end_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    detector = StallDetector(after_s=10)
    detector.durable(2, 500)
    with caplog.at_level(logging.WARNING, logger="evalstream.worker"):
        for now in (0.0, 10.0, 15.0, 20.0, 31.0):
            detector.check({2: 600}, {2: 700}, now)  # the fetch position is ahead: durable progress is what counts
        assert detector.episodes == 1
        assert sum("STALLED" in r.message for r in caplog.records) == 3  # at 10 s, 20 s and 31 s
        detector.durable(2, 550)
        assert detector.check({2: 600}, {2: 700}, now=32.0) == [] and detector.stalled == set()
    assert "partition 2 moves again (durable up to offset 549)" in caplog.text


def test_recovery_time_and_partitions_moved_away_are_not_stalls() -> None:
    detector = StallDetector(after_s=10)
    detector.check({0: 100, 1: 100}, {0: 0, 1: 0}, now=0.0)
    detector.pause(now=25.0)  # restoring tables until 25 s
    assert detector.check({0: 100, 1: 100}, {0: 0, 1: 0}, now=30.0) == []
    assert [s.partition for s in detector.check({0: 100, 1: 100}, {0: 0, 1: 0}, now=36.0)] == [0, 1]
    assert detector.check({1: 100}, {1: 0}, now=37.0)[0].partition == 1 and detector.stalled == {1}  # 0 moved away
    detector.reset()  # a new assignment: everyone starts afresh; the count stays
    assert detector.check({1: 100}, {1: 0}, now=38.0) == [] and detector.episodes == 2
