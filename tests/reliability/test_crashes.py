"""Workers SIGKILLed at random moments while traffic arrives, two in the group part of the time: the data equals a
clean run's exactly (events once, every malformed message and duplicate in the DLQ once, the same scores and
windows, the same alerts, each fired once).

The short version runs by default (about 8,000 events, 3 kills); ``-m long`` runs 200,000 events and 5 kills.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from sinks.catalog import landed_counts
from streams.local.launch import spawn_cli, stop, wait_for
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.app import TABLES
from tests.integration.alert_traffic import RULES, Receiver
from tests.reliability.chaos import (
    ALERTS,
    RAW_WINDOWS,
    SCORES,
    WINDOWS,
    Traffic,
    build_traffic,
    check_stored_once,
    kill_workers_while_running,
    publish_paced,
    rows,
)

pytestmark = pytest.mark.integration


def _run_settings(settings: Settings, tmp_path: Path, name: str, receiver: Receiver) -> Settings:
    """One run's settings: its own consumer group, data folder and downstream topics, on the shared events topic."""
    rules = tmp_path / f"rules-{name}.toml"
    rules.write_text(RULES.format(url=receiver.url, timeout=2.0))
    run = settings.model_copy(update={
        "worker_id": f"{settings.worker_id}-{name}", "data_dir": tmp_path / name, "embed_backend": "off",
        "flush_max_events": 500, "flush_interval_s": 0.5, "window_idle_s": 3600.0, "alert_rules": rules,
        "session_timeout_s": 20.0,
        "dlq_topic": f"{settings.events_topic}.{name}.dlq", "metrics_topic": f"{settings.metrics_topic}.{name}",
        "alerts_topic": f"{settings.alerts_topic}.{name}",
    })  # fmt: skip
    ensure_topics(run, tables=TABLES)
    return run


def _finish(run: Settings, traffic: Traffic, log: Path) -> str:
    """Run one worker until everything has landed and both alert deliveries are logged; its log."""
    worker = spawn_cli(["worker"], run.to_env(), log)
    expected = (len(traffic.valid_ids), traffic.dead_letters)
    try:
        wait_for(lambda: landed_counts(run.data_dir) == expected or None, 600, 1.0, "every event", worker)
        wait_for(lambda: len(rows(run.data_dir, ALERTS)) >= 2 or None, 240, 1.0, "the alerts", worker)
        closed = len(rows(run.data_dir, RAW_WINDOWS))
        wait_for(lambda: len(rows(run.data_dir, WINDOWS)) >= closed or None, 240, 1.0, "the windows", worker)
        wait_for(lambda: rows(run.data_dir, "SELECT count(*) FROM alert_deliveries WHERE delivered")[0][0] >= 2 or None,
                 120, 1.0, "the deliveries", worker)  # fmt: skip
    finally:
        stop(worker, 60)
    return log.read_text()


def _check_run(run: Settings, traffic: Traffic, receiver: Receiver) -> None:
    """What must hold in any run: every valid event once, every bad message and copy dead-lettered once, windows
    equal to the raw scores, one firing and one resolved alert delivered once each."""
    check_stored_once(run, traffic)
    data = run.data_dir
    counted = [r[:9] for r in rows(data, WINDOWS)]
    assert rows(data, "SELECT sum(late_events) FROM windows") == [(0,)]
    assert counted == rows(data, RAW_WINDOWS)
    assert [r[1:4] for r in rows(data, ALERTS)] == [
        ("firing", "thumbs-drop", "answer"), ("resolved", "thumbs-drop", "answer")]  # fmt: skip
    keys = Counter(r["key"] for r in receiver.delivered())
    assert sorted(keys) == sorted({f"{r[0]}:{r[1]}" for r in rows(data, ALERTS)})  # at-least-once, one key each


def _crash_suite(
    settings: Settings, tmp_path: Path, n_events: int, kills: int, publish_s: float, seed: int, store: str | None = None
) -> None:
    """The chaos run (in ``store``, an object store, if given) against a clean run in a local folder."""
    settings = settings.model_copy(update={"topic_partitions": 6})
    traffic = build_traffic(n_events, seed)
    rng = random.Random(seed)
    chaos_receiver, clean_receiver = Receiver(), Receiver()
    try:
        chaos = _run_settings(settings, tmp_path, "chaos", chaos_receiver)
        if store is not None:  # Faust's own files stay local
            chaos = chaos.model_copy(update={"data_dir": store, "state_dir": tmp_path / "chaos-state"})
        publisher = publish_paced(settings, traffic, publish_s)
        started = time.monotonic()
        faults = kill_workers_while_running(chaos, kills, tmp_path, rng, second_from=1, second_until=min(3, kills - 1))
        publisher.join(publish_s + 120)
        final_log = _finish(chaos, traffic, tmp_path / "worker-final.log")
        chaos_s = time.monotonic() - started
        clean = _run_settings(settings, tmp_path, "clean", clean_receiver)
        _finish(clean, traffic, tmp_path / "worker-clean.log")

        print(f"\n{len(traffic.messages)} messages ({len(traffic.malformed)} malformed, {traffic.duplicates} copies); "
              f"kills (worker, seconds alive, events landed): {faults.kills}; chaos run {chaos_s:.0f} s")  # fmt: skip
        for run, receiver in ((chaos, chaos_receiver), (clean, clean_receiver)):
            _check_run(run, traffic, receiver)
        assert rows(chaos.data_dir, SCORES) == rows(clean.data_dir, SCORES)
        assert rows(chaos.data_dir, WINDOWS) == rows(clean.data_dir, WINDOWS)
        assert rows(chaos.data_dir, ALERTS) == rows(clean.data_dir, ALERTS)  # the same ids: deterministic
        assert len(faults.kills) == kills + 1
        # every offset holds a record here (no transactions, no retention): none may be taken for absent
        assert re.search(r"evalstream counters at shutdown: .*'absent_offsets': 0", final_log), final_log[-3000:]
        logs = [path.read_text() for path in faults.logs]
        assert not [text for text in logs if "hold no record" in text]
        # records Faust dropped at rebalances were read again (the repair: streams/faust_ext/own_offsets.py)
        print("reseeks after dropped records:", sum(text.count("reading them again") for text in logs))
    finally:
        chaos_receiver.close()
        clean_receiver.close()


def test_workers_killed_mid_stream_lose_nothing_and_equal_a_clean_run(settings: Settings, tmp_path: Path) -> None:
    _crash_suite(settings, tmp_path, n_events=8000, kills=3, publish_s=40, seed=11)


def test_two_workers_sharing_an_object_store_lose_nothing(settings: Settings, tmp_path: Path, s3_root: str) -> None:
    """Workers on several machines share one consumer group and one object store: the same suite, smaller (every
    read goes through moto), with the data folder an S3 bucket; compared with a clean run in a local folder."""
    _crash_suite(settings, tmp_path, n_events=2000, kills=2, publish_s=20, seed=13, store=s3_root)


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_200k_events_and_five_kills(settings: Settings, tmp_path: Path) -> None:
    _crash_suite(settings, tmp_path, n_events=200_000, kills=5, publish_s=240, seed=12)
