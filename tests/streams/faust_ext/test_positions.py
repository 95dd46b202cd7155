"""The no-gap rule (streams.faust_ext.positions) against a simulated consumer that drops, repeats and rewinds.

The simulation is a partition log (offsets, some holding no record), a fetch position and the records fetched but
not yet delivered. Hypothesis picks what the consumer does: fetch, deliver, drop a record on the way (what Faust
does at a rebalance), rewind to an earlier offset (Faust's seek to the committed offset). The worker's side
does what ``OwnedOffsets`` does: on ``SEEK`` it moves the fetch position back to the next offset, and when
nothing is left to deliver while the fetch position is past the next offset it restarts from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.faust_ext.positions import Position, Verdict


@dataclass
class Consumer:
    log: list[int]  # the offsets that hold a record, ascending
    fetch_at: int
    in_flight: list[tuple[int, bool]] = field(default_factory=list)  # (offset, first record after a seek)
    after_seek: bool = False

    def fetch(self) -> bool:
        nxt = next((o for o in self.log if o >= self.fetch_at), None)
        if nxt is None:
            return False
        self.in_flight.append((nxt, self.after_seek))
        self.after_seek = False
        self.fetch_at = nxt + 1
        return True

    def seek(self, offset: int) -> None:  # records already fetched stay on their way (stale)
        self.fetch_at = offset
        self.after_seek = True


def _deliver(consumer: Consumer, position: Position, admitted: list[int]) -> Position:
    offset, _ = consumer.in_flight.pop(0)
    position, verdict = position.admit(offset)
    if verdict.admitted:
        admitted.append(offset)
    if verdict is Verdict.SEEK:
        consumer.seek(position.next)
    return position


def _run_to_the_end(consumer: Consumer, position: Position, admitted: list[int]) -> Position:
    """A faithful consumer from here on, with the worker's restart when fetched records never arrive."""
    for _ in range(10_000):
        if consumer.in_flight:
            position = _deliver(consumer, position, admitted)
        elif not consumer.fetch():
            if position.next > max(consumer.log, default=-1):
                return position
            # nothing on its way, yet records from `next` on exist: they were fetched and lost -> read again
            position = position.restarted(consumer.fetch_at - 1)
            consumer.seek(position.next)
    raise AssertionError("did not finish")


logs = st.lists(st.booleans(), min_size=1, max_size=40).map(lambda holds: [i for i, h in enumerate(holds) if h])
actions = st.lists(st.sampled_from(["fetch", "fetch", "deliver", "deliver", "drop", "rewind"]), max_size=80)


@settings(max_examples=400, deadline=None)
@given(log=logs, script=actions, rewind_to=st.integers(0, 40))
def test_every_record_is_admitted_once_in_order_whatever_the_consumer_drops_or_repeats(
    log: list[int], script: list[str], rewind_to: int
) -> None:
    """Drops anywhere except the first record after a seek (see the next test), repeats and rewinds: in the end
    every record of the log is admitted exactly once, in offset order."""
    consumer = Consumer(log, fetch_at=0)
    position = Position(0)
    admitted: list[int] = []
    for action in script:
        if action == "fetch":
            consumer.fetch()
        elif action == "deliver" and consumer.in_flight:
            position = _deliver(consumer, position, admitted)
        elif action == "drop" and consumer.in_flight and not consumer.in_flight[0][1]:
            consumer.in_flight.pop(0)
        elif action == "rewind":  # Faust's seek to the committed offset: never past what was admitted
            consumer.seek(min(rewind_to, position.next))
    _run_to_the_end(consumer, position, admitted)
    assert admitted == log


def test_a_single_re_read_that_starts_late_is_not_taken_as_proof_of_absence() -> None:
    """Offset 3 delivered while 1 is expected: read again. If that re-read begins at 3 (record 1 dropped once
    more), 1..2 are not taken for absent: a second re-read must begin there too."""
    position, verdict = Position(1).admit(3)
    assert verdict is Verdict.SEEK
    position, verdict = position.admit(3)  # the first re-read begins at 3
    assert verdict is Verdict.SEEK and position.next == 1
    position, verdict = position.admit(4)  # the rest of that first re-read: stale now
    assert verdict is Verdict.STALE
    position, verdict = position.admit(1)  # the second re-read has record 1 after all
    assert verdict is Verdict.ACCEPT and position == Position(2)


def test_offsets_without_records_are_accepted_after_two_re_reads_agree() -> None:
    """Offsets 5..7 hold no record (transaction markers, or deleted by retention): both re-reads begin at 8."""
    position, verdict = Position(5).admit(8)
    assert verdict is Verdict.SEEK
    position, verdict = position.admit(9)  # fetched before the seek
    assert verdict is Verdict.STALE
    position, verdict = position.admit(8)
    assert verdict is Verdict.SEEK
    position, verdict = position.admit(8)
    assert verdict is Verdict.ABSENT and verdict.admitted and position == Position(9)


def test_duplicates_are_dropped_and_do_not_disturb_a_seek() -> None:
    position, verdict = Position(10).admit(4)
    assert verdict is Verdict.DUPLICATE and position == Position(10)
    position, _ = position.admit(12)
    assert position.seeking
    position, verdict = position.admit(9)
    assert verdict is Verdict.DUPLICATE and position.seeking
    position, verdict = position.admit(10)
    assert verdict is Verdict.ACCEPT and position == Position(11)
