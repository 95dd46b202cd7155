"""De-duplication by event_id: a repeated id is dead-lettered once its partition has processed the first copy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sinks.catalog import connect
from streams.settings import Settings
from streams.worker.batch import BatchProcessor
from streams.worker.counters import WorkerCounters
from streams.worker.dedup import SeenEvents
from streams.worker.join import GenerationJoin
from streams.worker.persist import ParquetSinks
from tests.helpers import DeadLetters, Event, Message


@given(st.lists(st.sampled_from("abcdef"), max_size=40), st.integers(0, 39))
def test_first_copies_are_new_later_copies_duplicates_and_a_replay_repeats_the_verdicts(
    ids: list[str], replay_from: int
) -> None:
    """Within the horizon, exactly the first copy of each id is new; replaying a suffix of the partition (the same
    offsets, as after a crash) gives every message the verdict it had the first time."""
    seen = SeenEvents({}, horizon_s=600)
    verdicts = [seen.first_offset(event_id, 0, offset, 1000.0) for offset, event_id in enumerate(ids)]
    first = {event_id: ids.index(event_id) for event_id in ids}
    assert verdicts == [None if first[e] == o else first[e] for o, e in enumerate(ids)]
    again = [seen.first_offset(e, 0, o, 1001.0) for o, e in enumerate(ids) if o >= replay_from]
    assert again == verdicts[replay_from:]


def test_ids_are_per_partition_and_expire_after_the_horizon() -> None:
    table: dict[str, object] = {}
    seen = SeenEvents(table, horizon_s=60)
    assert seen.first_offset("e", 0, 5, now=0.0) is None
    assert seen.first_offset("e", 1, 5, now=1.0) is None  # another partition: another key, not a duplicate
    assert seen.first_offset("e", 0, 6, now=59.0) == 5
    assert seen.expire(0, now=61.0) == 1 and "0:e" not in table and "1:e" in table  # state stays bounded
    assert seen.first_offset("e", 0, 7, now=62.0) is None


def _feedback(event_id: str, thumbs: str = "up") -> bytes:
    return json.dumps({
        "type": "feedback", "event_id": event_id, "ts": "2026-11-25T10:00:00Z", "session_id": "s", "app": "a",
        "generation_id": "g", "thumbs": thumbs,
    }).encode()  # fmt: skip


def test_a_duplicate_is_dead_lettered_with_the_first_offset_and_a_replay_writes_the_same_rows(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embed_backend="off")
    counters = WorkerCounters()
    dlq = DeadLetters()
    processor = BatchProcessor(
        GenerationJoin({}, 3600), dlq, ParquetSinks(tmp_path), counters, {}, settings,  # type: ignore[arg-type]
        seen=SeenEvents({}, settings.dedup_horizon_s),
    )  # fmt: skip
    # one duplicate inside the first batch (offset 2 repeats offset 0), one in the next batch (offset 3 repeats 1)
    first = [Event(Message("t", 0, o, b"s", v)) for o, v in enumerate([_feedback("a"), _feedback("b"), _feedback("a")])]
    second = [Event(Message("t", 0, 3, b"s", _feedback("b", "down"))), Event(Message("t", 0, 4, b"s", _feedback("c")))]
    for batch in (first, second):
        asyncio.run(processor.process(batch))  # type: ignore[arg-type]
    assert (counters.valid, counters.dead_lettered, counters.duplicates) == (3, 2, 2)

    con = connect(tmp_path)
    assert con.execute("SELECT event_id, _offset FROM events ORDER BY 2").fetchall() == [("a", 0), ("b", 1), ("c", 4)]
    reasons = con.execute("SELECT _offset, reason FROM dlq ORDER BY 1").fetchall()
    assert reasons == [
        (2, "duplicate event_id 'a': first at offset 0"), (3, "duplicate event_id 'b': first at offset 1")]  # fmt: skip
    thumbs = con.execute("SELECT event_id, value FROM scores WHERE metric = 'thumbs_up' ORDER BY 1").fetchall()
    assert thumbs == [("a", 1.0), ("b", 1.0), ("c", 1.0)]  # b's "down" copy was not scored
    assert len(dlq.sent) == 2

    # the first batch replayed (a crash before its offsets committed): the same verdicts, the same files
    asyncio.run(processor.process(first))  # type: ignore[arg-type]
    assert con.execute("SELECT count(*) FROM events").fetchone() == (3,)
    assert con.execute("SELECT _offset FROM dlq ORDER BY 1").fetchall() == [(2,), (3,)]
