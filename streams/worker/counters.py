"""What the worker has done since it started: logged every 30 s and at shutdown.

Example::

    >>> c = WorkerCounters()
    >>> c.valid += 3
    >>> c.valid, c.dead_lettered
    (3, 0)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WorkerCounters:
    """Counts per outcome; every message ends in ``valid`` or ``dead_lettered``."""

    valid: int = 0
    dead_lettered: int = 0
    scores: int = 0
    duplicates: int = 0  # messages whose event_id their partition had processed (dead-lettered, not scored)
    orphans: int = 0  # edit/feedback/regenerate whose generation is unknown or expired
    refreshes: int = 0  # generations that asked an earlier input of their session again
    expired: int = 0  # generations dropped from the join table
    spans_unjoined: int = 0  # spans scored without their generation's labels (it never came within the join TTL)
    late_events: int = 0  # messages with a score whose window had closed (stored and scored; counted in the windows)
    windows_emitted: int = 0  # live windows (per partition and group) sent to the metrics topic
    batches: int = 0
    write_retries: int = 0
    stalls: int = 0  # partitions found with messages waiting and no durable progress (streams.faust_ext.stall)
    # how the events topic's records arrived (streams.faust_ext.own_offsets): delivered again and dropped;
    # partitions read again because the consumer dropped records; offsets found to hold no record (logged)
    redelivered: int = 0
    reseeks: int = 0
    absent_offsets: int = 0
    embedded: int = 0  # generations embedded and scored
    embedding_errors: int = 0  # generations stored without embedding scores because encoding failed (logged)
    novelty_errors: int = 0  # generations stored without novelty because computing it failed (logged)
    # where the batches' time went on the event loop (seconds, summed): scoring (parse, join, rules, novelty),
    # waiting for the embeddings once scored (> 0: the model is the limit), writing (state, DLQ, Parquet)
    seconds_scoring: float = 0.0
    seconds_waiting_for_embeddings: float = 0.0
    seconds_writing: float = 0.0
