"""Live windows and alerts through the real broker: an incident planted in event time fires one alert for its route
and resolves after it ends; late scores inside the grace period change their window and later ones are counted;
the windows equal DuckDB's aggregates of the raw scores; a webhook that fails twice still gets both state changes,
signed; and a worker killed between firing and delivery still delivers, with the same idempotency key."""

from __future__ import annotations

import math
import signal
import subprocess
import threading
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import get_settings as api_settings
from metrics.quantiles import QuantileSketch
from sinks.catalog import connect, landed_counts, query
from streams.alerts.webhooks import verify
from streams.local.launch import spawn_cli, stop, wait_for
from streams.sdk.publisher import Publisher
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.app import TABLES
from tests.integration.alert_traffic import RULES, T0, Receiver, at, incident_traffic, ticks

pytestmark = pytest.mark.integration

WIDTH, GRACE = 60, 120


def alert_settings(settings: Settings, tmp_path: Path, receiver: Receiver, timeout: float = 2.0) -> Settings:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.format(url=receiver.url, timeout=timeout))
    return settings.model_copy(update={
        "embed_backend": "off", "flush_max_events": 100, "window_s": WIDTH, "window_grace_s": GRACE,
        "window_idle_s": 3600.0, "alert_rules": rules,
    })  # fmt: skip


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    ensure_topics(settings, tables=TABLES)  # before the first publish: the topics get all their partitions
    return spawn_cli(["worker"], settings.to_env(), log)


def publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
        pub.publish_many(events)


def rows(data: Path, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    columns, found = query(connect(data), sql, params or {})
    return [dict(zip(columns, r, strict=True)) for r in found]


def window_count(data: Path) -> int:
    return rows(data, "SELECT count(DISTINCT window_start) AS n FROM windows WHERE app = 'shop'")[0]["n"]


def test_an_incident_fires_once_resolves_and_is_delivered_the_windows_match_the_raw_scores(
    settings: Settings, tmp_path: Path
) -> None:
    receiver = Receiver(lambda n, key: 500 if n < 2 else 200)  # fails twice first
    settings = alert_settings(settings, tmp_path, receiver)
    traffic = incident_traffic(14, incident=(5, 10))
    in_grace = {**ticks(0)[0], "event_id": "probe-1", "generation_id": "probe-1", "route": "probe", "ts": at(750),
                "latency_ms": 777.0}  # fmt: skip  # 12:30, its window [12, 13) closes at a watermark of 15:00
    too_late = {**in_grace, "event_id": "probe-2", "generation_id": "probe-2", "ts": at(630), "latency_ms": 999.0}
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        publish(settings, traffic)
        wait_for(lambda: landed_counts(settings.data_dir) == (len(traffic), 0) or None, 240, what="the traffic",
                 alive=worker)  # fmt: skip
        publish(settings, [in_grace, too_late])  # s0's partition has closed the windows before 11:00 by now
        wait_for(lambda: landed_counts(settings.data_dir) == (len(traffic) + 2, 0) or None, 120, what="the probes",
                 alive=worker)  # fmt: skip
        publish(settings, ticks(16 * 60))  # every partition's watermark to 16:00: windows up to 14:00 close
        wait_for(lambda: window_count(settings.data_dir) >= 14 or None, 120, what="the windows", alive=worker)
        wait_for(lambda: len({r["json"]["state"] for r in receiver.delivered()}) == 2 or None, 60,
                 what="both deliveries", alive=worker)  # fmt: skip
        wait_for(lambda: rows(settings.data_dir, "SELECT count(*) AS n FROM alert_deliveries")[0]["n"] >= 4 or None,
                 30, what="the delivery log", alive=worker)  # fmt: skip
    finally:
        stop(worker)
        receiver.close()
    data = settings.data_dir

    # one incident, on the route that suffered, fired within window + grace of its start, resolved after it ended
    alerts = rows(data, "SELECT * FROM alerts ORDER BY changed_at")
    assert [(a["state"], dict(a["group"])["route"]) for a in alerts] == [("firing", "answer"), ("resolved", "answer")]
    firing, resolved = alerts
    start, end = T0.replace(tzinfo=None) + timedelta(minutes=5), T0.replace(tzinfo=None) + timedelta(minutes=10)
    assert firing["window_start"] == start and firing["value"] == pytest.approx(0.2)
    detection = (firing["detected_at"] - start).total_seconds()
    print(f"\nfired at {firing['changed_at']}, detected at {firing['detected_at']}: {detection:.0f} s after the start")
    assert WIDTH + GRACE <= detection <= WIDTH + GRACE + WIDTH  # a batch's worth of event time at most beyond
    assert resolved["alert_id"] == firing["alert_id"] and resolved["window_start"] == end

    # the webhook: both state changes, signed, the firing one after two failures, one key per state change
    delivered = receiver.delivered()
    assert [(r["json"]["state"], r["key"]) for r in delivered] == [
        ("firing", f"{firing['alert_id']}:firing"), ("resolved", f"{firing['alert_id']}:resolved")]  # fmt: skip
    assert all(verify("s3cret", r["headers"]["X-Evalstream-Signature"], r["body"]) for r in delivered)
    assert [r["status"] for r in receiver.requests] == [500, 500, 200, 200]
    assert "[FIRING critical] thumbs-drop" in delivered[0]["json"]["text"]
    log = rows(data, "SELECT attempt, delivered, final FROM alert_deliveries WHERE state = 'firing' ORDER BY attempt")
    assert [(r["attempt"], r["delivered"], r["final"]) for r in log] == [(1, False, False), (2, False, False),
                                                                         (3, True, True)]  # fmt: skip

    # late scores: inside the grace period they count in their window; later, they are counted, not aggregated
    probe = rows(
        data,
        """SELECT window_start, count, sum, late_events FROM windows
                          WHERE route = 'probe' AND metric = 'latency_ms' ORDER BY window_start""",
    )
    assert [(r["window_start"], r["count"], r["sum"]) for r in probe if r["count"]] == [
        (T0.replace(tzinfo=None) + timedelta(minutes=12), 1, 777.0)]  # fmt: skip
    assert sum(r["late_events"] for r in probe) == 1
    stored = rows(data, "SELECT count(*) AS n FROM scores WHERE generation_id LIKE 'probe-%' AND metric = 'latency_ms'")
    assert stored[0]["n"] == 2  # both are stored and scored

    # every window of the incident traffic equals DuckDB's aggregate of the raw scores
    raw: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for r in rows(
        data,
        """SELECT time_bucket(INTERVAL 1 minute, ts) AS w, route, metric, value FROM scores
                           WHERE app = 'shop' AND route IN ('answer', 'search', 'summarize')""",
    ):
        raw[(r["w"], r["route"], r["metric"])].append(r["value"])
    windows = rows(
        data,
        """SELECT window_start, route, metric, count, sum, min, max, p50, p95, sketch, late_events
                            FROM windows WHERE route IN ('answer', 'search', 'summarize')""",
    )
    assert len(windows) == len(raw) and len(raw) > 14 * 3 * 5
    for w in windows:
        values = sorted(raw[(w["window_start"], w["route"], w["metric"])])
        assert (w["count"], w["sum"], w["min"], w["max"], w["late_events"]) == (
            len(values), math.fsum(values), values[0], values[-1], 0)  # fmt: skip
        for q in (0.5, 0.95):  # a value of the sample at rank q (the sketch holds them all at this size)
            assert QuantileSketch.from_text(w["sketch"]).get(q) in values
            rank = sum(v <= w["p50" if q == 0.5 else "p95"] for v in values) / len(values)
            assert rank >= q - 1 / len(values)

    # the API: the incident, its windows, its deliveries and the queries that explain it
    api_settings.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALSTREAM_DATA_DIR", str(data))
        client = TestClient(create_app())
        listed = client.get("/v1/alerts", params={"state": "resolved", "since": at(0), "until": at(3600)}).json()
        assert [i["alert_id"] for i in listed["data"]] == [firing["alert_id"]]
        assert client.get("/v1/alerts", params={"state": "firing", "since": at(0), "until": at(3600)}).json()[
            "count"] == 0  # fmt: skip
        one = client.get(f"/v1/alerts/{firing['alert_id']}").json()
        assert one["state"] == "resolved" and one["group"] == {"app": "shop", "route": "answer"}
        assert [w["route"] for w in one["fired_windows"]] == ["answer"] and one["fired_windows"][0]["count"] == 30
        assert len(one["deliveries"]) >= 4 and set(one["links"]) == {"timeseries", "drift", "clusters", "components"}
        assert client.get(one["links"]["timeseries"]).status_code == 200
        assert client.get("/v1/alerts/nope").status_code == 404
    api_settings.cache_clear()


@pytest.mark.parametrize("standalone", [False, True], ids=["agent-in-worker", "agent-on-its-own"])
def test_a_worker_killed_between_firing_and_delivery_still_delivers_once_per_key(
    settings: Settings, tmp_path: Path, standalone: bool
) -> None:
    release = threading.Event()

    def answer(n: int, key: str) -> int:
        if n == 0:  # the first delivery hangs until the agent's process is gone
            release.wait(60)
            return 500
        return 200

    receiver = Receiver(answer)
    settings = alert_settings(settings, tmp_path, receiver, timeout=30.0)
    settings = settings.model_copy(update={"alerts_in_worker": not standalone})

    def start_agent(n: int, scoring: subprocess.Popen[bytes] | None) -> subprocess.Popen[bytes]:
        if standalone:  # `evalstream alerts` beside a worker that runs no agent
            return spawn_cli(["alerts"], settings.to_env(), tmp_path / f"alerts-{n}.log")
        return scoring or start_worker(settings, tmp_path / f"worker-{n}.log")

    traffic = incident_traffic(9, incident=(2, 6))
    scoring = start_worker(settings, tmp_path / "worker.log") if standalone else None
    try:
        agent = start_agent(1, scoring)
        try:
            publish(settings, traffic)
            wait_for(lambda: receiver.requests or None, 240, what="the first delivery", alive=agent)
            agent.send_signal(signal.SIGKILL)
            agent.wait(30)
        finally:
            release.set()
            stop(agent)
        first_key = receiver.requests[0]["key"]
        assert first_key.endswith(":firing")
        agent = start_agent(2, None)
        try:
            wait_for(lambda: receiver.delivered() or None, 180, what="the delivery after the restart", alive=agent)
            publish(settings, ticks(12 * 60))  # the incident ends: its resolution comes too
            wait_for(lambda: len(receiver.delivered()) >= 2 or None, 180, what="the resolution", alive=agent)
        finally:
            stop(agent)
    finally:
        if scoring is not None:
            stop(scoring)
        receiver.close()
    delivered = receiver.delivered()
    per_key: dict[str, int] = defaultdict(int)
    for r in delivered:
        per_key[r["key"]] += 1
    alert_id = first_key.split(":")[0]
    assert dict(per_key) == {f"{alert_id}:firing": 1, f"{alert_id}:resolved": 1}
    alerts = rows(settings.data_dir, "SELECT alert_id, state FROM alerts")
    assert sorted((a["alert_id"], a["state"]) for a in alerts) == [(alert_id, "firing"), (alert_id, "resolved")]


def test_an_alert_kafka_refuses_stops_the_process_and_its_restart_delivers_it_once(
    settings: Settings, tmp_path: Path
) -> None:
    """The alerting agent's batch failed outside the per-message guards (the broker refuses the alert record): it
    used to be restarted by Faust past the batch, and that partition then committed nothing until the process was
    restarted by hand. The process now stops with status 70 before delivering anything; its restart (once the
    cause is gone) replays the batch, and the alert is stored and delivered once."""
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    from streams.fail_stop import FAILED_EXIT_STATUS

    receiver = Receiver()
    settings = alert_settings(settings, tmp_path, receiver)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    limited = NewTopic(settings.alerts_topic, num_partitions=settings.topic_partitions,
                       config={"max.message.bytes": "256"})  # an alert record is larger  # fmt: skip
    for future in admin.create_topics([limited]).values():
        future.result(30)
    try:
        worker = start_worker(settings, tmp_path / "worker-1.log")
        try:
            publish(settings, incident_traffic(9, incident=(2, 6)))
            code = worker.wait(240)
        finally:
            stop(worker)
        log = (tmp_path / "worker-1.log").read_text()
        assert code == FAILED_EXIT_STATUS, log[-3000:]
        assert "a batch failed (MessageSizeTooLargeError" in log and "stopping the worker (exit status 70)" in log
        assert not receiver.requests  # nothing delivered for an alert Kafka does not have

        resource = ConfigResource("topic", settings.alerts_topic, set_config={"max.message.bytes": "1048576"})
        for future in admin.alter_configs([resource]).values():
            future.result(30)
        worker = start_worker(settings, tmp_path / "worker-2.log")
        try:
            wait_for(lambda: receiver.delivered() or None, 240, what="the delivery after the restart", alive=worker)
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{exc}; the restarted worker's log ends:\n"
                                 f"{(tmp_path / 'worker-2.log').read_text()[-6000:]}") from exc  # fmt: skip
        finally:
            stop(worker)
        restarted = (tmp_path / "worker-2.log").read_text()
        assert f"{settings.metrics_topic}: input queue kept out of flow-control clearing" in restarted
    finally:
        receiver.close()
    (delivery,) = receiver.delivered()
    assert delivery["key"].endswith(":firing")
    alerts = rows(settings.data_dir, "SELECT alert_id, state FROM alerts")
    assert [(a["alert_id"], a["state"]) for a in alerts] == [(delivery["key"].split(":")[0], "firing")]
