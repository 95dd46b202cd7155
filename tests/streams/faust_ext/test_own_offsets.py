"""A real worker whose Faust consumer drops records on the way, as it does at rebalances: nothing is lost.

The worker runs as its own process (``evalstream worker``'s code) with one change: the consumer's delivery
callback swallows chosen records once, after they were fetched. That is what faust-streaming 0.15.3 does to
records fetched when a rebalance stops the flow (``streams/faust_ext/own_offsets.py``). Four cases, one per
partition:

- partition 0: offsets 30..39 dropped mid-stream: offset 40 arrives while 30 is expected, the partition is read
  again from 30;
- partition 1: its last 5 records dropped: nothing after them reveals the gap, so the idle check (fetch position
  past the next offset, nothing delivered for 10 s) reads them again;
- partition 2: its first 20 records dropped, with no committed offset (the takeover case that lost 3,708
  events in the long crash test): the position starts at the log's start, and offset 20 sends it back there;
- partition 3: every record dropped, with no committed offset (what stalled the alerting agent when Faust's
  flow control cleared its queue after a restart): no record ever arrives, and the idle check reads the
  partition again from the log's start.

Every event lands exactly once. The worker commits only when a commit is due (an hour here), at a revocation
and at a clean stop: nothing is committed while it runs, and the partitions' ends once it has stopped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from sinks.catalog import connect, landed_counts
from streams.local.launch import stop, wait_for
from streams.local.sample import generate
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.app import TABLES
from tests.integration.traffic import publish

pytestmark = pytest.mark.integration

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from streams.settings import Settings
    from streams.worker.app import create_app, run_worker

    drops = {tuple(pair) for pair in json.loads(os.environ["TEST_DROP"])}
    app = create_app(Settings())
    deliver = app.consumer.callback

    async def callback(message):
        key = (message.partition, message.offset)
        if key in drops:  # fetched, never delivered: what Faust does to records fetched around a rebalance
            drops.discard(key)
            print("test: dropped", key, flush=True)
            return None
        return await deliver(message)

    app.consumer.callback = callback
    sys.argv = [sys.argv[0]]
    run_worker(app)
    """
)


def _offsets(settings: Settings, partitions: int, group: bool) -> list[int]:
    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": settings.worker_id, "enable.auto.commit": False}
    )
    try:
        parts = [TopicPartition(settings.events_topic, p) for p in range(partitions)]
        if group:
            return [tp.offset for tp in consumer.committed(parts, timeout=30)]
        return [consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in parts]
    finally:
        consumer.close()


def test_records_the_consumer_drops_are_read_again_and_land_once(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(
        update={"flush_max_events": 50, "flush_interval_s": 0.5, "embed_backend": "off", "commit_interval_s": 3600}
    )
    partitions = ensure_topics(settings, tables=TABLES)
    traffic = generate(n_events=600, n_sessions=40, n_malformed=0, seed=5)
    publish(settings, traffic)
    ends = _offsets(settings, partitions, group=False)
    assert all(end >= 60 for end in ends[:3]) and ends[3] > 0, ends
    drops = (
        [(0, o) for o in range(30, 40)] + [(1, o) for o in range(ends[1] - 5, ends[1])] + [(2, o) for o in range(20)]
        + [(3, o) for o in range(ends[3])]
    )  # fmt: skip
    script = tmp_path / "worker_that_drops.py"
    script.write_text(WORKER)
    log_path = tmp_path / "worker.log"
    env = {**settings.to_env(), "TEST_DROP": json.dumps(drops), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:
        worker = subprocess.Popen(
            [sys.executable, str(script)], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[3], start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: landed_counts(settings.data_dir) == (600, 0) or None, 180, what="all events", alive=worker)
        assert all(offset < 0 for offset in _offsets(settings, partitions, group=True))  # no commit due yet
    finally:
        code = stop(worker)
    assert _offsets(settings, partitions, group=True) == ends  # committed at the clean stop
    text = log_path.read_text()
    assert code in (0, -15), text[-3000:]
    assert text.count("test: dropped") == len(drops), text[-3000:]
    assert "[0]: offset 40 delivered while 30 was expected" in text, text[-3000:]
    assert f"[1]: offsets {ends[1] - 5}..{ends[1] - 1} were fetched but never delivered" in text, text[-3000:]
    assert "[2]: offset 20 delivered while 0 was expected" in text, text[-3000:]
    assert re.search(r"\[3\]: offsets 0\.\.\d+ were fetched but never delivered", text), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    con = connect(settings.data_dir)
    stored = con.execute("SELECT event_id, count(*) FROM events GROUP BY event_id").fetchall()
    assert sorted(event_id for event_id, _ in stored) == sorted(e["event_id"] for e in traffic.events)
    assert all(n == 1 for _, n in stored)
