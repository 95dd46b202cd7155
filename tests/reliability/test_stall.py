"""Stalls: a worker whose partitions stop making durable progress says so, loudly, and says when they move again;
a soak test (``-m long``) crashes and recovers workers many times and fails on any stall or slow recovery."""

from __future__ import annotations

import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from sinks.catalog import landed_counts
from sinks.status import read_statuses
from streams.local.launch import spawn_cli, stop, wait_for
from streams.local.sample import SampleTraffic, generate
from streams.settings import Settings
from streams.topics import changelog_topic, ensure_topics
from streams.worker.app import FAILED_EXIT_STATUS, TABLES
from tests.integration.traffic import publish, run_worker_until_landed
from tests.reliability.chaos import rows

pytestmark = pytest.mark.integration


def _quick(settings: Settings, **update: object) -> Settings:
    quick = {"embed_backend": "off", "flush_max_events": 200, "flush_interval_s": 0.5, "worker_metrics_port": 0}
    return settings.model_copy(update={**quick, **update})


def test_a_partition_that_cannot_make_progress_is_reported_stalled_until_it_moves_again(
    settings: Settings, tmp_path: Path
) -> None:
    settings = _quick(settings, stall_after_s=6.0)
    ensure_topics(settings, tables=TABLES)
    traffic = generate(n_events=1200, n_sessions=40, seed=5)
    first, second = traffic.events[:600], traffic.events[600:]
    log_path = tmp_path / "worker.log"
    worker = spawn_cli(["worker"], settings.to_env(), log_path)
    scores = settings.data_dir / "scores"
    try:
        publish(settings, SampleTraffic(events=first))
        wait_for(lambda: landed_counts(settings.data_dir) == (600, 0) or None, 180, what="the first half", alive=worker)
        shutil.move(scores, tmp_path / "scores-aside")
        scores.write_text("not a folder: every write of the scores fails")
        publish(settings, SampleTraffic(events=second))
        wait_for(lambda: "STALLED: partition" in log_path.read_text() or None, 120, what="a STALLED error",
                 alive=worker)  # fmt: skip
        status = wait_for(
            lambda: next((s for s in read_statuses(settings.data_dir) if s["counters"]["stalls"] > 0), None),
            30, what="the stall in the status file", alive=worker,
        )  # fmt: skip
        assert status["counters"]["write_retries"] > 0
        scores.unlink()
        shutil.move(tmp_path / "scores-aside", scores)
        wait_for(lambda: landed_counts(settings.data_dir) == (1200, 0) or None, 180, what="the rest", alive=worker)
        wait_for(lambda: "moves again" in log_path.read_text() or None, 30, what="the end of the stall", alive=worker)
    finally:
        stop(worker)
    log = log_path.read_text()
    assert "Not a directory" in log or "NotADirectoryError" in log, log[-3000:]  # the cause is in the log too
    assert rows(settings.data_dir, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(1200, 1200)]
    unscored = """SELECT count(*) FROM events e WHERE type = 'generation'
                  AND NOT EXISTS (SELECT 1 FROM scores s WHERE s.event_id = e.event_id)"""
    assert rows(settings.data_dir, unscored) == [(0,)]  # the batch that waited has its scores


def test_a_batch_kafka_refuses_stops_the_worker_and_its_restart_replays_it(settings: Settings, tmp_path: Path) -> None:
    """A batch failed outside the per-message guards (here the broker refuses a table's changelog record, as it did
    for a huge output before the records were made UTF-8 and given room): the worker used to have Faust restart its
    agent past the batch, which then waited for those offsets forever. It now stops with status 70 and commits
    nothing of the batch; its restart (once the cause is gone) replays it, and everything lands exactly once."""
    settings = _quick(settings)
    generations = changelog_topic(settings, "generations")
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.create_topics([NewTopic(generations, num_partitions=settings.topic_partitions,
                                                config={"cleanup.policy": "compact", "max.message.bytes": "4096"})
                                       ]).values():  # fmt: skip
        future.result(30)
    ensure_topics(settings, tables=TABLES)
    events = generate(n_events=300, n_sessions=20, seed=6).events
    big = next(e for e in events if e["type"] == "generation")
    big["output"] = "a long answer " * 1000  # 14 kB: its join record does not fit the 4 kB limit
    publish(settings, SampleTraffic(events=events))
    log_path = tmp_path / "worker-1.log"
    worker = spawn_cli(["worker"], settings.to_env(), log_path)
    try:
        code = worker.wait(180)
    finally:
        stop(worker)
    log = log_path.read_text()
    assert code == FAILED_EXIT_STATUS, log[-3000:]
    assert "a batch failed (MessageSizeTooLargeError" in log and "stopping the worker (exit status 70)" in log
    stored = landed_counts(settings.data_dir)[0] if settings.data_dir.exists() else 0
    assert stored < 300  # the failed batch was not written

    resource = ConfigResource("topic", generations, set_config={"max.message.bytes": "1048576"})
    for future in admin.alter_configs([resource]).values():
        future.result(30)
    alive, code, log = run_worker_until_landed(settings, 300, 0, tmp_path / "worker-2.log")
    assert alive and code in (0, -signal.SIGTERM), log[-3000:]
    assert rows(settings.data_dir, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(300, 300)]


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_soak_crash_and_recover_many_times_without_a_stall(settings: Settings, tmp_path: Path) -> None:
    """Repeat: start a worker, let it consume part of a backlog, SIGKILL it. Every replacement must make progress
    within its start-up, the rebalance and the session timeout of the dead one, and none may log a stall."""
    settings = _quick(settings, stall_after_s=30.0, flush_max_events=2000, session_timeout_s=20.0)
    ensure_topics(settings, tables=TABLES)
    rng = random.Random(4)
    cycles, n = 25, 60_000
    publish(settings, generate(n_events=n, n_sessions=400, seed=8))
    recoveries = []
    for cycle in range(cycles):
        before = landed_counts(settings.data_dir)[0] if settings.data_dir.exists() else 0
        if before >= n:
            publish(settings, generate(n_events=20_000, n_sessions=400, seed=100 + cycle))
            n += 20_000
        log_path = tmp_path / f"worker-{cycle}.log"
        worker, started = spawn_cli(["worker"], settings.to_env(), log_path), time.monotonic()
        try:
            wait_for(lambda: landed_counts(settings.data_dir)[0] > before or None, 240, 0.2,  # noqa: B023
                     f"progress in cycle {cycle}", worker)  # fmt: skip
            recoveries.append(time.monotonic() - started)
            time.sleep(rng.uniform(0.5, 4.0))
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        assert "STALLED" not in log_path.read_text(), log_path
    recoveries.sort()
    median = recoveries[len(recoveries) // 2]
    print(f"\n{cycles} cycles: first durable batch after a median {median:.1f} s, max {recoveries[-1]:.1f} s")
    # and after all those kills, a last worker recovers once more and finds every event of the backlog, each stored
    # once: it gets fresh events of its own (the last cycle's worker may have landed everything before its kill)
    publish(settings, generate(n_events=5_000, n_sessions=400, seed=99))
    n += 5_000
    alive, code, log = run_worker_until_landed(settings, n, 0, tmp_path / "worker-final.log")
    assert alive and code in (0, -signal.SIGTERM), log[-3000:]
    assert rows(settings.data_dir, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(n, n)]
