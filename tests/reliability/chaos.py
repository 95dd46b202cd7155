"""The reliability suite's traffic and its fault loop: a realistic mix published while workers are killed.

The traffic is deterministic for a seed: the sample mix (generations, spans, feedback, edits, regenerates,
refreshes), an incident planted in event time (one alert must fire and resolve), 1 % malformed messages, 0.5 %
exact copies of valid events (the same ``event_id``, published again later), and ticks at the end that move every
partition's watermark past the last window. Valid events are published in event-time order, so no score is late
and the windows are the same whatever the batching: a run with faults must equal a clean run exactly.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sinks.catalog import connect, landed_counts, query
from streams.local.launch import spawn_cli, stop_all, wait_for
from streams.local.sample import generate
from streams.sdk.publisher import Publisher
from streams.settings import Settings
from streams.worker.dead_letters import SOURCE_HEADER
from tests.helpers import consume_all
from tests.integration.alert_traffic import T0, incident_traffic, ticks


@dataclass
class Traffic:
    """What is published, in order: (key, value) pairs, and what the worker must make of them."""

    messages: list[tuple[bytes | None, bytes | None]]
    valid_ids: set[str]
    malformed: list[tuple[bytes | None, bytes | None]]
    duplicates: int

    @property
    def dead_letters(self) -> int:
        return len(self.malformed) + self.duplicates


def build_traffic(n_events: int, seed: int = 11) -> Traffic:
    """About ``n_events`` valid events plus 1 % malformed and 0.5 % duplicates, in publication order."""
    rng = random.Random(seed)
    incident = incident_traffic(14, incident=(5, 10))
    sample = generate(
        n_events=max(0, n_events - len(incident)), n_sessions=max(40, n_events // 50), seed=seed,
        end=T0 + timedelta(hours=3), span=timedelta(hours=2),
    )  # fmt: skip
    # event-time order (stable: each session's own order is kept): no score is ever late
    valid = sorted(incident + sample.events, key=lambda e: datetime.fromisoformat(e["ts"]))
    messages: list[tuple[bytes | None, bytes | None]] = [
        (e["session_id"].encode(), json.dumps(e).encode()) for e in valid
    ]
    # copies first (each later than its original, same key), then the malformed anywhere
    copies = rng.sample(range(len(messages)), len(valid) // 200)
    for index in sorted(copies, reverse=True):  # inserting past ``index`` leaves the earlier indexes in place
        messages.insert(rng.randrange(index + 1, len(messages) + 1), messages[index])
    n_bad = len(valid) // 100
    malformed = generate(n_events=n_bad + 1, n_malformed=n_bad, seed=seed + 1).malformed
    for bad in malformed:
        messages.insert(rng.randrange(len(messages) + 1), bad)
    tick_events = ticks(4 * 3600)
    messages += [(e["session_id"].encode(), json.dumps(e).encode()) for e in tick_events]
    ids = {e["event_id"] for e in valid} | {e["event_id"] for e in tick_events}
    return Traffic(messages, ids, malformed, len(copies))


def publish_paced(settings: Settings, traffic: Traffic, seconds: float) -> threading.Thread:
    """Publish ``traffic`` in 100 even slices over ``seconds``, on a thread (returned, started)."""

    def run() -> None:
        with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
            slices = 100
            size = -(-len(traffic.messages) // slices)
            started = time.monotonic()
            for n in range(slices):
                for key, value in traffic.messages[n * size : (n + 1) * size]:
                    pub.publish_raw(value, key)
                pub.flush()
                time.sleep(max(0.0, started + seconds * (n + 1) / slices - time.monotonic()))

    thread = threading.Thread(target=run, name="publisher", daemon=True)
    thread.start()
    return thread


@dataclass
class FaultLog:
    """What the fault loop did, for the test's report."""

    kills: list[tuple[str, float, int]] = field(default_factory=list)  # (worker, seconds alive, events landed)
    logs: list[Path] = field(default_factory=list)


def kill_workers_while_running(
    settings: Settings, kills: int, log_dir: Path, rng: random.Random, second_from: int, second_until: int
) -> FaultLog:
    """Start a worker, SIGKILL it at a random moment once it has landed events, ``kills`` times; a second
    worker in the same group runs from round ``second_from`` until it is killed in round ``second_until``
    (so partitions move between workers while both are killed)."""
    done = FaultLog()
    extra: subprocess.Popen[bytes] | None = None

    def spawn(name: str) -> subprocess.Popen[bytes]:
        path = log_dir / f"{name}.log"
        done.logs.append(path)
        return spawn_cli(["worker"], settings.to_env(), path)

    try:
        for round_ in range(kills):
            before = landed_counts(settings.data_dir)[0]  # an empty or missing folder counts 0
            worker, started = spawn(f"worker-{round_}"), time.monotonic()
            if round_ == second_from:
                extra = spawn("worker-extra")
            wait_for(lambda: landed_counts(settings.data_dir)[0] > before or None, 240, 0.2,  # noqa: B023
                     f"progress in round {round_}", worker)  # fmt: skip
            time.sleep(rng.uniform(0.0, 3.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            done.kills.append((f"worker-{round_}", time.monotonic() - started, landed_counts(settings.data_dir)[0]))
            if round_ == second_until and extra is not None:
                extra.send_signal(signal.SIGKILL)
                extra.wait(10)
                done.kills.append(("worker-extra", 0.0, landed_counts(settings.data_dir)[0]))
                extra = None
    finally:
        if extra is not None:
            stop_all([extra])
    return done


def check_stored_once(run: Settings, traffic: Traffic) -> None:
    """Every valid event stored once; every malformed message and copy dead-lettered once, in Parquet and (at least
    once, a replay may send one again) on the DLQ topic."""
    data = run.data_dir
    assert rows(data, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(len(traffic.valid_ids),) * 2]
    assert {r[0] for r in rows(data, "SELECT event_id FROM events")} == traffic.valid_ids
    dlq = rows(data, "SELECT _partition, _offset, reason FROM dlq")
    assert len({(p, o) for p, o, _ in dlq}) == len(dlq) == traffic.dead_letters
    assert sum(reason.startswith("duplicate event_id") for *_, reason in dlq) == traffic.duplicates
    sent = consume_all(run.bootstrap_servers, run.dlq_topic, run.topic_partitions)
    assert set(traffic.malformed) <= {(m.key(), m.value()) for m in sent}
    assert len({dict(m.headers() or [])[SOURCE_HEADER] for m in sent}) == traffic.dead_letters


def rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """All rows of ``sql`` over ``data_dir``'s views."""
    con = connect(data_dir)
    try:
        return query(con, sql)[1]
    finally:
        con.close()


# the ticks at T0 + 4 h close every window before it (less the grace); their own windows stay open
CLOSED = "window_start < TIMESTAMP '2026-11-30 12:30:00'"
SCORES = "SELECT event_id, generation_id, metric, CAST(value AS VARCHAR) FROM scores ORDER BY ALL"
WINDOWS = f"""SELECT window_start, app, route, model, prompt_version, index_version, component, metric, count,
                    CAST(sum AS VARCHAR), min, max, late_events, partitions FROM windows WHERE {CLOSED} ORDER BY ALL"""
RAW_WINDOWS = f"""SELECT time_bucket(INTERVAL 60 SECOND, ts) AS window_start, app, route, model, prompt_version,
                        index_version, component, metric, count(*) FROM scores
                 GROUP BY ALL HAVING {CLOSED} ORDER BY ALL"""
ALERTS = """SELECT alert_id, state, rule, "group"['route'], window_start FROM alerts ORDER BY window_start, state"""
