"""Operating the pipeline against a real broker: the worker's Prometheus metrics follow the traffic (events by type,
dead letters by reason, batch latency), its status file appears and ``GET /v1/pipeline`` reports it with the lag
and the dead letters; ``evalstream replay`` of a gzipped file with invalid lines lands every valid event exactly
once and lists the invalid ones; ``evalstream status`` shows topics, lag, workers and firing alerts, and exits 1
when the broker cannot be reached."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from api.app import create_app
from api.settings import get_settings as api_settings
from sinks.alerting import write_alert
from sinks.catalog import connect, landed_counts, query
from sinks.status import read_statuses, status_name
from streams.cli import app as cli
from streams.local.launch import spawn_cli, stop, wait_for
from streams.local.sample import generate
from streams.sdk.publisher import Publisher
from streams.settings import Settings, get_settings
from streams.topics import ensure_topics
from streams.worker.app import TABLES

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ops_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"embed_backend": "off", "worker_metrics_port": free_port()})


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    ensure_topics(settings, tables=TABLES)
    return spawn_cli(["worker"], settings.to_env(), log)


def scrape(settings: Settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The worker's ``/metrics``, parsed by prometheus_client's parser: every sample by (name, sorted labels)."""
    text = httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by_label(found: dict[tuple[str, tuple], float], name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in found.items() if n == name}


def test_worker_metrics_status_file_pipeline_and_status_command(settings: Settings, tmp_path: Path) -> None:
    settings = ops_settings(settings)
    first = generate(n_events=200, n_malformed=6, seed=11)
    second = generate(n_events=120, n_malformed=4, seed=12)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
            pub.publish_many(first.events)
            for key, value in first.malformed:
                pub.publish_raw(value, key)
        wait_for(lambda: landed_counts(settings.data_dir) == (200, 6) or None, 180, what="the first wave",
                 alive=worker)  # fmt: skip
        wait_for(lambda: scrape_or_none(settings), 30, what="the metrics endpoint", alive=worker)
        before = scrape(settings)
        with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
            pub.publish_many(second.events)
            for key, value in second.malformed:
                pub.publish_raw(value, key)
        wait_for(lambda: landed_counts(settings.data_dir) == (320, 10) or None, 180, what="the second wave",
                 alive=worker)  # fmt: skip
        after = scrape(settings)

        # events by type and dead letters by reason, exactly as many as were sent, in both scrapes
        sent_types = Counter(e["type"] for e in first.events)
        assert by_label(before, "evalstream_worker_events_total", "type") == {**sent_types, "invalid": 6}
        sent_types.update(e["type"] for e in second.events)
        assert by_label(after, "evalstream_worker_events_total", "type") == {**sent_types, "invalid": 10}
        reasons = by_label(after, "evalstream_worker_dead_letters_total", "reason")
        assert sum(reasons.values()) == 10 and all(len(r) <= 60 and not any(c.isdigit() for c in r) for r in reasons)
        batches = ("evalstream_worker_batch_seconds_count", ())
        assert after[batches] > before[batches] >= 1
        assert after[("evalstream_worker_batches_total", ())] == after[batches]
        assert after[("evalstream_worker_valid_total", ())] == 320
        for name in ("late_events", "windows_emitted", "scoring_seconds", "waiting_for_embeddings_seconds",
                     "writing_seconds"):  # fmt: skip
            assert (f"evalstream_worker_{name}_total", ()) in after, name
        assert after[("evalstream_worker_scoring_seconds_total", ())] > 0

        # the status file, and the lag of every partition once the 5 s timer has seen the end
        path = settings.data_dir / status_name(settings.worker_id, worker.pid, socket.gethostname())
        status = wait_for(lambda: caught_up(path), 60, what="a status file with no lag", alive=worker)
        assert status["counters"]["valid"] == 320 and status["counters"]["dead_lettered"] == 10
        assert sorted(status["partitions"]) == [0, 1, 2, 3] and status["last_batch_at"]
        lag = by_label(scrape(settings), "evalstream_worker_consumer_lag", "partition")
        assert lag == {"0": 0, "1": 0, "2": 0, "3": 0}

        # GET /v1/pipeline: from the files only
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("EVALSTREAM_DATA_DIR", str(settings.data_dir))
            api_settings.cache_clear()
            answer = TestClient(create_app()).get("/v1/pipeline").json()
            api_settings.cache_clear()
        (seen,) = answer["workers"]
        assert (seen["pid"], seen["state"], seen["stale"]) == (worker.pid, "running", False)
        assert answer["lag"] == {"0": 0, "1": 0, "2": 0, "3": 0} and answer["total_lag"] == 0
        assert answer["workers_running"] == 1 and answer["last_batch_at"]
        assert answer["dlq"]["count"] == 10 and len(answer["dlq"]["latest"]) == 10
        stored = {r[0] for r in query(connect(settings.data_dir), "SELECT reason FROM dlq")[1]}
        assert {d["reason"] for d in answer["dlq"]["latest"]} <= stored
        assert all(d["source"].startswith(f"{settings.events_topic}:") for d in answer["dlq"]["latest"])

        # evalstream status: topics, lag of the group, the worker, a firing alert (written as the agent writes one)
        write_alert(settings.data_dir, firing_alert())
        get_settings.cache_clear()
        result = CliRunner().invoke(cli, ["status"], env={**settings.to_env(), "COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        out = result.stdout
        for topic in (settings.events_topic, settings.dlq_topic, settings.metrics_topic, settings.alerts_topic):
            assert topic in out, topic
        assert f"Consumer lag of group {settings.worker_id}" in out
        assert "Firing alerts (1)" in out and "thumbs-drop" in out and "running" in out
    finally:
        stop(worker)
    assert read_statuses(settings.data_dir)[0]["state"] == "stopped"


def scrape_or_none(settings: Settings) -> dict[Any, float] | None:
    try:
        return scrape(settings)
    except httpx.HTTPError:
        return None


def caught_up(path: Path) -> dict[str, Any] | None:
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    lag = status.get("lag") or {}
    return status if len(lag) == 4 and sum(lag.values()) == 0 and status.get("last_batch_at") else None


def firing_alert() -> dict[str, Any]:
    """An incident's firing record as the alerting agent hands it to the sink (times in epoch seconds)."""
    now = time.time()
    start = now - 300
    return {
        "alert_id": "a1b2c3", "state": "firing", "rule": "thumbs-drop", "rule_version": "1", "kind": "threshold",
        "severity": "critical", "description": "thumbs up rate fell", "app": "shop", "group": {"app": "shop"},
        "metric": "thumbs_up", "aggregation": "rate", "comparator": "<", "threshold": 0.45, "value": 0.2,
        "samples": 30, "p_value": None, "window_start": start, "window_end": start + 60,
        "changed_at": now, "detected_at": now, "windows": [start],
    }  # fmt: skip


def test_replay_lands_every_valid_event_once_and_lists_the_invalid_lines(settings: Settings, tmp_path: Path) -> None:
    settings = ops_settings(settings)
    events = generate(n_events=400, seed=21).events
    lines = [json.dumps(e) for e in events]
    bad = {5: "{not json", 77: json.dumps({"type": "feedback"}), 150: '"a string"', 301: json.dumps({**events[0],
           "thumbs": "maybe", "type": "feedback"})}  # fmt: skip
    for index in sorted(bad):  # 1-based line numbers in the file once inserted in order
        lines.insert(index - 1, bad[index])
    lines.insert(10, "")  # blank lines are skipped, not counted
    path = tmp_path / "backfill.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")

    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["replay", str(path)], env=settings.to_env())
    assert result.exit_code == 0, result.output
    assert f"sent 400 events to {settings.events_topic}" in result.stdout
    assert "4 invalid lines skipped; 0 not delivered" in result.stdout
    numbered = [line.split(":")[0] for line in result.stderr.splitlines() if line.startswith("line ")]
    assert numbered == [f"line {n + (1 if n > 10 else 0)}" for n in sorted(bad)]  # the blank line shifts the later ones
    assert "malformed JSON" in result.stderr and "thumbs: Input should be" in result.stderr

    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        wait_for(lambda: landed_counts(settings.data_dir) == (400, 0) or None, 180, what="the backfill", alive=worker)
    finally:
        stop(worker)
    _, rows = query(connect(settings.data_dir), "SELECT event_id, count(*) FROM events GROUP BY event_id")
    assert {r[0]: r[1] for r in rows} == {e["event_id"]: 1 for e in events}


def test_status_exits_1_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    get_settings.cache_clear()
    env = {"EVALSTREAM_BOOTSTRAP_SERVERS": "127.0.0.1:1", "EVALSTREAM_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli, ["status", "--timeout", "3"], env=env)
    assert result.exit_code == 1
    assert "broker unreachable at 127.0.0.1:1" in result.stdout
    assert "Firing alerts (0)" in result.stdout  # what the data folder says is still shown
