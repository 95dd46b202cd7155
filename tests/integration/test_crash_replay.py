"""A worker killed mid-stream and replaced: every event lands exactly once (against a real Kafka broker)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from sinks.catalog import connect, landed_counts
from streams.local.launch import spawn_cli, wait_for
from streams.local.sample import generate
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.dead_letters import SOURCE_HEADER
from tests.helpers import consume_all
from tests.integration.traffic import expected_refreshes, publish, run_worker_until_landed

pytestmark = pytest.mark.integration


def _files(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Every Parquet file the worker's sinks wrote: its path and (inode, modification time), to tell a rewrite.

    Not the alerting agent's ``windows``: a window closed before the crash is emitted once, and not rewritten by
    the replay (the live windows skip what they already applied).
    """
    return {
        str(path.relative_to(data_dir)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for dataset in ("events", "scores", "embeddings", "dlq")
        for path in data_dir.glob(f"{dataset}/dt=*/*.parquet")
    }


def _committed(settings: Settings, partitions: int) -> list[int]:
    """The consumer group's committed offset per partition of the events topic (negative: none)."""
    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": settings.worker_id, "enable.auto.commit": False}
    )
    try:
        parts = [TopicPartition(settings.events_topic, p) for p in range(partitions)]
        return [tp.offset for tp in consumer.committed(parts, timeout=30)]
    finally:
        consumer.close()


def test_crash_and_replay_writes_each_event_once(settings: Settings, tmp_path: Path) -> None:
    """A worker killed with SIGKILL mid-stream is replaced; the replacement replays what was written but not
    committed, rewrites those files, and Parquet still holds every event exactly once."""
    settings = settings.model_copy(update={"flush_max_events": 40, "flush_interval_s": 0.5})
    partitions = ensure_topics(settings)
    traffic = generate(n_events=1500, n_sessions=50, n_malformed=10, seed=9)
    publish(settings, traffic)

    # The first worker commits no offset before it dies (a minute between commits), so a replay must happen.
    slow_commits = settings.model_copy(update={"commit_interval_s": 60.0})
    first = spawn_cli(["worker"], slow_commits.to_env(), tmp_path / "worker-1.log")
    try:
        wait_for(lambda: 0 < landed_counts(settings.data_dir)[0] < 1500 or None, 120, 0.05, "a first flush", first)
    finally:
        first.kill()
        first.wait(10)
    assert landed_counts(settings.data_dir)[0] < 1500, "the first worker finished before it could be killed"
    before = _files(settings.data_dir)
    assert before and all(offset < 0 for offset in _committed(settings, partitions))

    alive, code, log = run_worker_until_landed(settings, 1500, 10, tmp_path / "worker-2.log")
    assert alive and code in (0, -signal.SIGTERM), log[-3000:]
    assert "Traceback" not in log, log[-3000:]  # records Faust dropped at start-up may be read again (logged)
    assert re.search(r"evalstream counters at shutdown: .*'absent_offsets': 0", log), log[-3000:]

    # The replay happened: every file the first worker left was replaced (same range: a new file in its place;
    # another cut of the same offsets: removed) by the second worker.
    after = _files(settings.data_dir)
    kept = [name for name, stamp in before.items() if after.get(name) == stamp]
    assert not kept, kept

    con = connect(settings.data_dir)
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (1500, 1500)
    dup_scores = con.execute(
        "SELECT count(*) FROM (SELECT event_id, metric FROM scores GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()
    assert dup_scores == (0,)
    edits = sum(e["type"] == "edit" for e in traffic.events)
    assert con.execute("SELECT count(*) FROM scores WHERE metric = 'edit_distance'").fetchone() == (edits,)
    # refreshes depend on worker state (the last asks per session): the replay finds the same ones
    refreshed = con.execute("SELECT generation_id, event_id FROM scores WHERE metric = 'refreshed'").fetchall()
    assert set(refreshed) == expected_refreshes(traffic.events) and len(refreshed) == len(set(refreshed))
    generations = sum(e["type"] == "generation" and not e.get("error") for e in traffic.events)
    embedded = con.execute("SELECT count(*), count(DISTINCT generation_id) FROM embeddings").fetchone()
    assert embedded == (generations, generations)
    dlq_rows = con.execute("SELECT count(*), count(DISTINCT (_partition, _offset)) FROM dlq").fetchone()
    assert dlq_rows == (10, 10)
    # batches never exceed flush_max_events (40): a file covers at most 40 offsets of its partition
    spans = [
        int(m["last"]) - int(m["first"]) + 1
        for path in (settings.data_dir / "events").glob("dt=*/*.parquet")
        if (m := re.match(r".*-(?P<first>\d{20})-(?P<last>\d{20})\.parquet$", path.name))
    ]
    assert spans and max(spans) <= 40

    # The DLQ topic is at-least-once: a replayed bad message may be there twice, but every one is there, with its
    # original key and value (a tombstone stays a tombstone) and its source.
    dlq = consume_all(settings.bootstrap_servers, settings.dlq_topic, partitions)
    sources = {dict(m.headers() or [])[SOURCE_HEADER] for m in dlq}
    assert len(sources) == 10
    assert {(m.key(), m.value()) for m in dlq} == set(traffic.malformed)
