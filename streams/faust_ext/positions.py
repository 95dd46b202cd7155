"""Where a partition's processing stands, and what to do with the next record delivered: the rule that no record
is skipped.

The worker processes each partition's records in offset order, from the committed offset on, with no gap: a
record is admitted only when it is the next one. Faust can deliver a record twice (after it seeks back to the
committed offset) and can fail to deliver some at all (records fetched while a rebalance stops the flow are
dropped, and the fetch position has moved past them), so each delivered record gets a verdict:

- ``ACCEPT``: the next offset; process it.
- ``DUPLICATE``: below the next offset (delivered before); drop it.
- ``SEEK``: past the next offset, so records are missing; drop it and read the partition again from the next
  offset.
- ``STALE``: past the missing range while a seek is under way (fetched before the seek); drop it.
- ``ABSENT``: past the next offset, and two reads from the next offset both began at this very record, so the
  offsets before it hold no record (a transaction marker, or records deleted by retention before they were
  read); accept it.

Offsets are committed only up to what was admitted (and written), so whatever Faust drops, nothing is committed
past a record that was not processed.

Example::

    >>> p = Position(10)
    >>> p, verdict = p.admit(10); verdict, p.next
    (<Verdict.ACCEPT: 'accept'>, 11)
    >>> p, verdict = p.admit(14); verdict  # 11..13 missing: read again from 11
    <Verdict.SEEK: 'seek'>
    >>> p, verdict = p.admit(15); verdict  # fetched before the seek
    <Verdict.STALE: 'stale'>
    >>> p, verdict = p.admit(11); verdict, p.next
    (<Verdict.ACCEPT: 'accept'>, 12)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.Enum):
    """What to do with a delivered record (see the module docstring)."""

    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    SEEK = "seek"
    STALE = "stale"
    ABSENT = "absent"

    @property
    def admitted(self) -> bool:
        """Process the record (it is the next one)."""
        return self is Verdict.ACCEPT or self is Verdict.ABSENT


@dataclass(frozen=True)
class Position:
    """A partition's next offset to process, and the state of a seek back to it (if one is under way).

    ``gap_end``: the highest offset that may arrive from the re-read (records above it were fetched before the
    seek). ``candidate``: the offset the last re-read began at, when it was past ``next`` (a second re-read that
    begins there too proves the offsets before it hold no record).
    """

    next: int
    gap_end: int | None = None
    candidate: int | None = None

    @property
    def seeking(self) -> bool:
        """A seek back to ``next`` is under way."""
        return self.gap_end is not None

    def restarted(self, fetched_to: int) -> Position:
        """A seek back to ``next`` after records up to ``fetched_to`` were fetched and never delivered.

        >>> Position(7).restarted(20)
        Position(next=7, gap_end=20, candidate=None)
        """
        return Position(self.next, gap_end=max(fetched_to, self.gap_end or self.next))

    def admit(self, offset: int) -> tuple[Position, Verdict]:
        """The position after a record at ``offset`` is delivered, and the verdict on that record.

        >>> Position(5).admit(3)[1].name, Position(5).admit(5)[0].next
        ('DUPLICATE', 6)
        """
        if offset < self.next:
            return self, Verdict.DUPLICATE
        if offset == self.next:
            return Position(offset + 1), Verdict.ACCEPT
        if self.gap_end is None:
            return Position(self.next, gap_end=offset), Verdict.SEEK
        if offset > self.gap_end:
            return self, Verdict.STALE
        if offset == self.candidate:
            return Position(offset + 1), Verdict.ABSENT
        # A re-read began past `next`: read once more to be sure (records after this one from the first re-read
        # are stale now).
        return Position(self.next, gap_end=offset, candidate=offset), Verdict.SEEK
