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

from typing import Any


def keep_stream_queue_on_resume(app: Any, stream: Any) -> bool:
    """Stop ``app.flow_control.resume()`` from clearing ``stream``'s input queue; True if it was registered."""
    queue = stream.channel.queue
    managed = getattr(app.flow_control, "_queues", None)
    if managed is not None and queue in managed:
        managed.discard(queue)
        return True
    return False
