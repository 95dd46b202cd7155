"""A work-around for a record-loss race in faust-streaming's recovery (0.15.x), applied by the worker's agent.

What happens without it (first seen in ``tests/integration/test_crash_replay.py``; the mechanism is shown by
``tests/streams/faust_ext/test_patches.py``):
when a worker starts, or rebalances, with table state to restore, ``Recovery.on_recovery_completed`` resumes the
stream partitions, awaits the seek to the committed offsets, then calls ``app.flow_control.resume()``, which
clears every queue registered with ``clear_on_resume`` -- the stream's own input queue among them. Records the
fetcher delivered into that queue while the seek was awaited are dropped, but the consumer's read offset has
already moved past them, so they are never delivered again (and its gap tracking later lets them commit). Seen
here: the records after the first batch of every partition vanished (e.g. offsets 10..30).

The agent takes its input queue out of the flow-control set, so resuming never clears it. That is safe because
the stream itself skips any record fetched under an older consumer generation (a revoked partition's leftovers),
and a record delivered twice (before and after the seek) is idempotent for evalstream: the Parquet sink replaces
files by offset range and the join table is overwritten with the same value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("evalstream.worker")


def keep_stream_queue_on_resume(app: Any, stream: Any) -> bool:
    """Stop ``app.flow_control.resume()`` from clearing ``stream``'s input queue; True if it was registered."""
    queue = stream.channel.queue
    managed = getattr(app.flow_control, "_queues", None)
    if managed is not None and queue in managed:
        managed.discard(queue)
        return True
    return False


def seek_uncommitted_to_start(app: Any, topics: set[str]) -> bool:
    """Make the consumer's seek to the committed offsets also seek the partitions of ``topics`` that have none
    (to their first offset, as a fresh consumer with ``auto_offset_reset=earliest`` starts); True once installed.

    Why: during a rebalance Faust drops records it already fetched (``Consumer.getmany`` stops mid-fetch when the
    flow stops; ``_drain_messages`` abandons a record whose delivery waits while the flow is suspended, and still
    records it as read), relying on ``perform_seek`` to read them again. aiokafka's ``seek_to_committed`` skips a
    partition without a committed offset, so there they were lost, and later committed past. Seen in
    ``tests/reliability/test_crashes.py -m long`` (one fetch, ~1,000 records, on each partition taken over before
    the first commit) and as a flaky ``tests/integration/test_crash_replay.py``. Reading from the start again is
    idempotent for evalstream (see the module docstring).
    """
    consumer = app.consumer
    original = consumer.seek_to_committed
    if getattr(original, "evalstream_patched", False):
        return False

    async def seek_to_committed() -> Mapping[Any, int]:
        committed = await original()
        missing = [
            tp for tp in consumer.assignment()
            if tp.topic in topics and (committed.get(tp) is None or committed[tp] < 0)
        ]  # fmt: skip
        if missing:
            starts = await consumer.earliest_offsets(*missing)
            for tp in missing:
                await consumer.seek(tp, int(starts.get(tp) or 0))
            log.info("no committed offset: %s read from the start",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(missing)))  # fmt: skip
        return committed

    seek_to_committed.evalstream_patched = True  # type: ignore[attr-defined]
    consumer.seek_to_committed = seek_to_committed
    return True
