"""A worker killed mid-stream and replaced: every event lands exactly once (against a real Kafka broker)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sinks.catalog import connect, landed_counts
from streams.local.launch import spawn_cli, stop, wait_for
from streams.local.sample import generate
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration.traffic import expected_refreshes, publish

pytestmark = pytest.mark.integration

N_EVENTS = 1000
N_MALFORMED = 20


def test_crash_and_replay_writes_each_event_once(settings: Settings, tmp_path: Path) -> None:
    """A worker killed with SIGKILL mid-stream is replaced; Parquet still holds every event exactly once."""
    settings = settings.model_copy(update={"flush_max_events": 40, "flush_interval_s": 0.5})
    ensure_topics(settings)
    traffic = generate(n_events=1500, n_sessions=50, n_malformed=10, seed=9)
    publish(settings, traffic)

    first = spawn_cli(["worker"], settings.to_env(), tmp_path / "worker-1.log")
    try:
        wait_for(lambda: 0 < landed_counts(settings.data_dir)[0] < 1500 or None, 120, 0.05, "a first flush", first)
    finally:
        first.kill()
        first.wait(10)
    assert landed_counts(settings.data_dir)[0] < 1500, "the first worker finished before it could be killed"

    second = spawn_cli(["worker"], settings.to_env(), tmp_path / "worker-2.log")
    try:
        wait_for(
            lambda: landed_counts(settings.data_dir) == (1500, 10) or None,
            180,
            what="the second worker",
            alive=second,
        )
    finally:
        stop(second)
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
    # batches never exceed flush_max_events (40): a file covers at most 40 offsets of its partition
    spans = [
        int(m["last"]) - int(m["first"]) + 1
        for path in (settings.data_dir / "events").glob("dt=*/*.parquet")
        if (m := re.match(r".*-(?P<first>\d{20})-(?P<last>\d{20})\.parquet$", path.name))
    ]
    assert spans and max(spans) <= 40
