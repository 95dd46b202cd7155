"""De-duplication by ``event_id``: a message whose id its partition saw recently is a duplicate, not a new event.

Publishers retry, OTLP exporters resend a batch whose answer was lost, a judge service replays after a crash: the
same event arrives twice under one ``event_id``. The first occurrence is stored and scored; a later one (another
offset of the same partition, within ``horizon_s`` seconds of processing time) goes to the dead letters with the
offset of the first, so it is counted and kept but never scored twice.

The ids live in an expiring Faust table keyed ``"<partition>:<event_id>"`` (written only from that partition, so
a rebalance moves them with it). A message at the *same* offset as the stored one is a replay of the message
itself (after a crash or a rebalance, before its offsets committed), not a duplicate: it is processed again.

Duplicates are found among the messages of one partition, that is with the same key: the SDK keys events by
``session_id``, so a resent event lands where its first copy did.

Example (with a plain dict standing in for the Faust table)::

    >>> seen = SeenEvents({}, horizon_s=600)
    >>> seen.first_offset("e1", partition=0, offset=10, now=1000.0) is None  # new: remembered
    True
    >>> seen.first_offset("e1", partition=0, offset=10, now=1001.0) is None  # the same message again (a replay)
    True
    >>> seen.first_offset("e1", partition=0, offset=17, now=1002.0)  # a duplicate: the first copy's offset
    10
    >>> seen.first_offset("e1", partition=0, offset=99, now=1700.0) is None  # past the horizon: new again
    True
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from streams.worker.join import ExpiringTable


class SeenEvents(ExpiringTable):
    """The event ids each partition processed within the horizon, with the offset of their first copy."""

    def __init__(self, table: MutableMapping[str, Any], horizon_s: float) -> None:
        super().__init__(table, horizon_s)

    def first_offset(self, event_id: str, partition: int, offset: int, now: float) -> int | None:
        """The offset of an earlier copy of ``event_id`` on ``partition`` (a duplicate), else None.

        A new id is remembered for ``horizon_s`` seconds from ``now``; a duplicate does not extend it.
        """
        key = f"{partition}:{event_id}"
        first = self.table.get(key)  # read as stored: this runs once per message
        if first and first["exp"] > now:
            return None if first["o"] == offset else int(first["o"])
        self.put(key, {"o": offset}, partition, now)
        return None
