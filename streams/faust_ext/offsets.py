"""The offset a partition's consumer group last committed, as this worker's Faust consumer knows it.

After a crash or a rebalance, consumption resumes at the committed offset: state that a replayed message must see
again (the novelty stage's recent outputs) is kept back to there. Faust keeps the offset in the private
``Consumer._committed_offset`` (updated on every commit, seeded from the broker on assignment); None when no
offset is known yet, in which case callers keep everything.

Example (an object standing in for the Faust app)::

    >>> from types import SimpleNamespace
    >>> from faust.types import TP
    >>> app = SimpleNamespace(consumer=SimpleNamespace(_committed_offset={TP("llm.events", 2): 1500}))
    >>> reader = committed_offsets(app, "llm.events")
    >>> reader(2), reader(3)
    (1500, None)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from faust.types import TP

log = logging.getLogger("evalstream.worker")


def committed_offsets(app: Any, topic: str) -> Callable[[int], int | None]:
    """A function from a partition of ``topic`` to its last committed offset (None: unknown)."""
    warned = False

    def committed(partition: int) -> int | None:
        nonlocal warned
        try:
            offset = app.consumer._committed_offset.get(TP(topic, partition))
        except AttributeError:  # another Faust: keep everything rather than guess (the caller's choice)
            if not warned:
                log.warning("Faust's consumer has no _committed_offset: replay state is kept unbounded")
                warned = True
            return None
        return None if offset is None else int(offset)

    return committed
