"""The demo's story through the real broker: ``evalstream simulate`` sends half an hour of history with its
incidents to a worker (embeddings on, the demo's alert rules, a loopback webhook), and the API finds each one: the
A/B difference, the model switch's drift, the failing class's cluster, the alerts with their deliveries, and the
slow retriever."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import get_settings as api_settings
from sinks.catalog import connect, landed_counts, query
from streams.local.demo import DEMO_RULES, RECEIVER_PLACEHOLDER, Webhook
from streams.local.launch import spawn_cli, stop, wait_for
from streams.local.simulate import APP, DEFAULT_INCIDENTS, FAILING_ROUTE, PII_ROUTE, SWITCH_TO
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.app import TABLES
from streams.worker.evalconfig import EXAMPLE_CONFIG

pytestmark = pytest.mark.integration

RULES = ("thumbs-up-drop", "pii-in-outputs", "latency-drift", "retriever-slow")


def rows(data: Path, sql: str) -> list[dict[str, Any]]:
    columns, found = query(connect(data), sql, {})
    return [dict(zip(columns, r, strict=True)) for r in found]


def z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def fired(data: Path) -> set[str]:
    """The rules with a firing incident whose webhook delivery is in the delivery log."""
    found = rows(
        data,
        """SELECT a.rule FROM alerts a JOIN alert_deliveries d USING (alert_id)
                          WHERE a.state = 'firing' AND d.state = 'firing' AND d.delivered""",
    )
    return {r["rule"] for r in found}


def test_the_api_finds_every_incident_of_the_simulated_story(settings: Settings, tmp_path: Path) -> None:
    hook = Webhook()
    rules = tmp_path / "rules.toml"
    rules.write_text(DEMO_RULES.read_text().replace(RECEIVER_PLACEHOLDER, hook.url))
    settings = settings.model_copy(
        update={"embed_backend": "auto", "eval_config": EXAMPLE_CONFIG, "alert_rules": rules}
    )
    data = settings.data_dir
    ensure_topics(settings, tables=TABLES)
    began = time.monotonic()
    worker = spawn_cli(["worker"], settings.to_env(), tmp_path / "worker.log")
    try:
        sim = subprocess.run(
            [sys.executable, "-m", "streams.cli", "simulate", "--backfill", "30", "--duration", "1", "--seed", "1"],
            env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert sim.returncode == 0, sim.stderr
        since = re.search(r"history since (\S+):", sim.stdout)
        sent = re.search(r"sent (\d+) events and (\d+) malformed", sim.stdout)
        assert since and sent, sim.stdout
        start = datetime.fromisoformat(since[1].replace("Z", "+00:00")).replace(tzinfo=None)
        counts = (int(sent[1]), int(sent[2]))
        wait_for(lambda: landed_counts(data) == counts or None, 300, 2, "the traffic", alive=worker)
        landed = time.monotonic() - began
        wait_for(lambda: fired(data) >= set(RULES) or None, 300, 2, "every rule's alert", alive=worker)
        alerted = time.monotonic() - began
    finally:
        stop(worker)
        hook.close()
    print(f"\n{counts[0]} events and {counts[1]} malformed landed after {landed:.0f} s, every alert delivered "
          f"after {alerted:.0f} s")  # fmt: skip
    at = {i.kind: start + timedelta(seconds=i.start_s) for i in DEFAULT_INCIDENTS}
    ends = {i.kind: at[i.kind] + timedelta(seconds=i.duration_s or 0) for i in DEFAULT_INCIDENTS}

    # the malformed share went to the dead-letter queue
    assert counts[1] > 10 and rows(data, "SELECT count(*) AS n FROM dlq")[0]["n"] == counts[1]

    # alerts: the failing route's thumbs-up drop while the class failed, the leak on its route, the latency drift
    # after the switch, the slow retriever; each delivered to the webhook with its idempotency key
    alerts = rows(data, "SELECT * FROM alerts WHERE state = 'firing' ORDER BY changed_at")
    drops = [a for a in alerts if a["rule"] == "thumbs-up-drop"]
    assert [dict(a["group"])["route"] for a in drops] == [FAILING_ROUTE]
    assert at["failing-class"] <= drops[0]["window_end"] and drops[0]["window_start"] < ends["failing-class"]
    assert drops[0]["value"] < 0.45
    leaks = [a for a in alerts if a["rule"] == "pii-in-outputs"]
    assert [dict(a["group"])["route"] for a in leaks] == [PII_ROUTE]
    assert at["pii-leak"] - timedelta(minutes=1) <= leaks[0]["window_start"] < ends["pii-leak"]
    (drift,) = [a for a in alerts if a["rule"] == "latency-drift"]
    assert at["model-switch"] < drift["window_end"] <= at["model-switch"] + timedelta(minutes=10)
    (slow,) = [a for a in alerts if a["rule"] == "retriever-slow"]
    assert at["slow-retriever"] < slow["window_end"] <= ends["slow-retriever"] + timedelta(minutes=3)
    keys = {key for key, _ in hook.deliveries}
    assert {f"{a['alert_id']}:firing" for a in alerts} <= keys

    api_settings.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVALSTREAM_DATA_DIR", str(data))
        mp.setenv("EVALSTREAM_EVAL_CONFIG", str(EXAMPLE_CONFIG))
        client = TestClient(create_app())

        def get(path: str, **params: Any) -> Any:
            response = client.get(path, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        # the A/B split: prompt v2 is liked more, significantly; the models are not told apart on thumbs
        ab = get("/v1/compare", dimension="prompt_version", a="v1", b="v2", metrics="thumbs_up")["data"][0]
        assert ab["significant"] and ab["difference"] > 0.05 and ab["a"]["n"] > 500 and ab["b"]["n"] > 500

        # the model switch: the outputs drifted after it, not before it; so did the latency
        switch = at["model-switch"]
        after = {"reference_since": z(start), "reference_until": z(switch), "current_since": z(switch),
                 "current_until": z(switch + timedelta(minutes=10))}  # fmt: skip
        before = {"reference_since": z(start), "reference_until": z(start + timedelta(minutes=5)),
                  "current_since": z(start + timedelta(minutes=5)), "current_until": z(switch)}  # fmt: skip
        (moved,) = get("/v1/drift", signal="output_embedding", app=APP, **after)["data"]
        (still,) = get("/v1/drift", signal="output_embedding", app=APP, **before)["data"]
        assert moved["drifted"] and not moved["insufficient_data"] and not still["drifted"]
        assert get("/v1/drift", signal="latency_ms", app=APP, **after)["data"][0]["drifted"]
        assert get("/v1/drift", signal="model", app=APP, **after)["data"][0]["drifted"]
        models = get("/v1/compare", dimension="model", a="claude-3-5-haiku", b=SWITCH_TO, metrics="latency_ms")
        assert models["data"][0]["difference"] > 1000

        # the failing class: the top cluster of its period is the refund questions; before it, none is
        clusters = get("/v1/clusters", app=APP, since=z(at["failing-class"]), until=z(ends["failing-class"]))
        top = clusters["data"][0]
        assert "refund" in top["label"] and top["lift"] > 1.5
        members = get(f"/v1/clusters/{top['cluster_id']}")["members"]
        refunds = [m for m in members if re.search(r"refund|money back", m.get("input") or "", re.I)]
        assert len(refunds) >= 0.8 * len(members) and len(refunds) >= 40
        earlier = get("/v1/clusters", app=APP, since=z(start), until=z(at["failing-class"]))["data"]
        assert not [c for c in earlier if "refund" in c["label"]]

        # the slow retriever: ten times its usual p95 and erroring during the incident, implicated in failures
        def retriever(since: datetime, until: datetime) -> dict[str, Any]:
            parts = get("/v1/components", app=APP, since=z(since), until=z(until))["data"]
            return {p["component"]: p for p in parts}["retriever"]

        usual = retriever(start, at["slow-retriever"])
        during = retriever(at["slow-retriever"], ends["slow-retriever"])
        assert during["p95_ms"] > 5 * usual["p95_ms"] and during["error_rate"] > 0.1 and usual["error_rate"] < 0.02

        # an alert names what explains it, and its deliveries
        one = get(f"/v1/alerts/{drops[0]['alert_id']}")
        assert one["group"] == {"app": APP, "route": FAILING_ROUTE} and any(d["delivered"] for d in one["deliveries"])
    api_settings.cache_clear()
