"""Refreshes in the worker: a generation that asks its session's earlier input again marks the earlier one.

The pure rules (input normalization, the window) are :mod:`metrics.refresh`; this module keeps the state: per
ask key (session, app, route, normalized input) the last few asks with their source offsets, in an expiring
Faust table.

Example (with a plain dict standing in for the Faust table)::

    >>> from streams.sdk.schema import validate_event
    >>> ask = {"type": "generation", "session_id": "s", "app": "chat", "route": "answer", "model": "m",
    ...        "prompt_version": "v1", "output": "..."}
    >>> first = validate_event({**ask, "event_id": "e1", "generation_id": "g1", "ts": "2026-11-25T10:00:00Z",
    ...                         "input": "Refund policy?"})
    >>> again = validate_event({**ask, "event_id": "e2", "generation_id": "g2", "ts": "2026-11-25T10:01:00Z",
    ...                         "input": "  refund POLICY? "})
    >>> refreshes = Refreshes({}, window_s=600, counters=WorkerCounters())
    >>> refreshes.scores(first, partition=0, offset=16, now=1000.0)
    []
    >>> [(s.event_id, s.generation_id, s.metric, s.value) for s in refreshes.scores(again, 0, 17, now=1060.0)]
    [('e2', 'g1', 'refreshed', 1.0)]
    >>> refreshes.counters.refreshes
    1
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from metrics.refresh import ask_key, within_window
from streams.sdk.schema import GenerationEvent
from streams.worker.counters import WorkerCounters
from streams.worker.join import ExpiringTable
from streams.worker.scoring import Score

ASKS_KEPT = 8  # asks kept per (session, app, route, input); a replay finds the earlier one among them


class Refreshes:
    """The ask state and the ``refreshed`` scores it gives."""

    def __init__(self, asks: MutableMapping[str, Any], window_s: float, counters: WorkerCounters) -> None:
        self.window_s = window_s
        self.counters = counters
        self.asks = ExpiringTable(asks, window_s)

    @property
    def table(self) -> MutableMapping[str, Any]:
        return self.asks.table

    def reset(self) -> None:
        """Forget the expiry heaps (on partition assignment)."""
        self.asks.reset()

    def expire(self, partition: int, now: float) -> None:
        self.asks.expire(partition, now)

    def scores(self, event: GenerationEvent, partition: int, offset: int, now: float) -> list[Score]:
        """``refreshed`` on the earlier generation when ``event`` asks the same thing again.

        The earlier ask is the newest one *before this offset*: a batch replayed after a crash (its state
        already written) finds the same earlier generations again, not itself or the asks that came after it.
        """
        key = ask_key(event.session_id, event.app, event.route, event.input)
        ts = event.ts.timestamp()
        stored = self.asks.get(key)
        # [offset, generation_id, ts, model, prompt_version, index_version], sorted by offset (entries written
        # before index versions existed have five fields)
        asks: list[list[Any]] = [a for a in (stored or {}).get("asks", ()) if a[0] != offset]
        before = [a for a in asks if a[0] < offset]
        asks.insert(len(before), [offset, event.generation_id, ts, event.model, event.prompt_version,
                                  event.index_version])  # fmt: skip
        self.asks.put(key, {"asks": asks[-ASKS_KEPT:]}, partition, now)
        if not before or not within_window(before[-1][2], ts, self.window_s):
            return []
        self.counters.refreshes += 1
        _, generation_id, _, model, prompt_version, *index = before[-1]
        return refresh_scores(event, generation_id, model, prompt_version, index[0] if index else None)


def refresh_scores(
    event: GenerationEvent, generation_id: str, model: str, prompt_version: str, index_version: str | None = None
) -> list[Score]:
    """``refreshed`` = 1 on the earlier generation (id and labels as the worker kept them) that ``event`` asked
    again (see :mod:`metrics.refresh`). The row's event is ``event``, its generation the earlier one, like a
    regenerate's."""
    return [
        Score(event.event_id, generation_id, event.ts_utc, event.app, event.route, model, prompt_version,
              "refreshed", 1.0, index_version)
    ]  # fmt: skip
