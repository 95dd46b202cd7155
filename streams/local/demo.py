"""``evalstream demo``: a local broker, the worker, the API and sample traffic, then where to look.

Uses ``EVALSTREAM_BOOTSTRAP_SERVERS`` when set, otherwise starts a local Apache Kafka broker (jars from Maven
Central on first use). Everything is written under one data folder (a temporary one by default).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import typer

from sinks.catalog import connect, landed_counts
from streams.local.launch import spawn_cli, stop, wait_for
from streams.local.sample import generate
from streams.sdk.publisher import Publisher
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.evalconfig import EXAMPLE_CONFIG


def _say(text: str, **style: object) -> None:
    typer.secho(text, **style)  # type: ignore[arg-type]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _http_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)
    return False


def run_demo(
    n_events: int = 2000,
    n_malformed: int = 20,
    duration: float = 0,
    port: int = 8000,
    data_dir: Path | None = None,
) -> int:
    from streams.local.broker import BrokerError, LocalBroker

    data = Path(data_dir or tempfile.mkdtemp(prefix="evalstream-demo-")).resolve()
    data.mkdir(parents=True, exist_ok=True)
    if not _port_free(port):
        _say(f"port {port} is busy; pass --port", fg="red", err=True)
        return 2
    broker = None
    bootstrap = os.environ.get("EVALSTREAM_BOOTSTRAP_SERVERS")
    children = []
    try:
        if not bootstrap:
            _say("• starting a local Apache Kafka broker (first run downloads its jars with Maven)…")
            try:
                broker = LocalBroker.start(data / "kafka")
            except BrokerError as exc:
                _say(f"error: {exc}", fg="red", err=True)
                return 1
            bootstrap = broker.bootstrap_servers
        _say(f"• Kafka at {bootstrap}")
        settings = Settings(
            bootstrap_servers=bootstrap, data_dir=data, eval_config=EXAMPLE_CONFIG,
            worker_id=f"evalstream-demo-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        env = settings.to_env()
        ensure_topics(settings)
        _say("• starting the worker and the API…")
        children.append(spawn_cli(["worker"], env, data / "worker.log"))
        children.append(spawn_cli(["api", "--port", str(port)], env, data / "api.log"))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _http_ok(f"{base}/health"), 60, what="the API")
        traffic = generate(n_events=n_events, n_malformed=n_malformed, seed=int(time.time()) % 10_000)
        _say(f"• publishing {n_events} sample events and {n_malformed} malformed messages…")
        with Publisher(bootstrap, settings.events_topic, config={"log_level": 3}) as pub:
            pub.publish_many(traffic.events)
            for key, value in traffic.malformed:
                pub.publish_raw(value, key)
        try:
            wait_for(lambda: landed_counts(data) == (n_events, n_malformed) or None, 180, 1.0, "the worker")
        except TimeoutError:
            _say(f"the worker did not land everything in time; see {data / 'worker.log'}", fg="red", err=True)
            return 1
        _summary(data, base)
        if duration > 0:
            time.sleep(duration)
        else:
            _say("Press Ctrl-C to stop.", bold=True)
            with contextlib.suppress(KeyboardInterrupt):
                while all(c.poll() is None for c in children):
                    time.sleep(1)
        return 0
    finally:
        for child in children:
            stop(child)
        if broker is not None:
            broker.stop()


def _summary(data: Path, base: str) -> None:
    con = connect(data)
    try:
        _say("\nLanded in Parquet:", bold=True)
        con.sql("SELECT type, count(*) AS events FROM events GROUP BY ALL ORDER BY events DESC").show()
        con.sql(
            "SELECT metric, count(*) AS n, round(avg(value), 6) AS mean FROM scores GROUP BY ALL ORDER BY metric"
        ).show()
        _say("Guardrails tripped (streams/worker/evalconfig.example.toml):", bold=True)
        con.sql(
            "SELECT s.app, substr(s.metric, 11) AS topic, count(*) AS flagged, any_value(e.output) AS example "
            "FROM scores s JOIN events e USING (event_id) "
            "WHERE s.metric LIKE 'guardrail\\_%' ESCAPE '\\' AND s.metric <> 'guardrail_flag' AND s.value = 1 "
            "GROUP BY ALL ORDER BY flagged DESC"
        ).show(max_width=140)
        con.sql("SELECT reason, count(*) AS n FROM dlq GROUP BY ALL ORDER BY n DESC").show(max_width=140)
    finally:
        con.close()
    example = f"{base}/v1/metrics/timeseries?metric=thumbs_up&window=1h&group_by=model"
    with urllib.request.urlopen(example, timeout=10) as resp:
        body = json.loads(resp.read())
    compare = f"{base}/v1/compare?dimension=model&a=llama-3.1-8b&b=gpt-4o-mini"
    with urllib.request.urlopen(compare, timeout=30) as resp:
        primary = json.loads(resp.read())["data"][0]
    if primary["difference"] is not None:
        _say(
            f"gpt-4o-mini vs llama-3.1-8b, {primary['metric']}: "
            f"{primary['b']['value']:.3f} vs {primary['a']['value']:.3f} "
            f"(difference {primary['difference']:+.3f}, p = {primary['p_value']:.2g}, "
            f"{'significant' if primary['significant'] else 'not significant'})",
            bold=True,
        )
    components = f"{base}/v1/components?app=docs-assistant"
    with urllib.request.urlopen(components, timeout=30) as resp:
        parts = json.loads(resp.read())["data"]
    con = connect(data)
    try:
        traced = con.execute(
            "SELECT trace_id FROM generations WHERE app = 'docs-assistant' AND thumbs_up = 0 AND trace_id IS NOT NULL "
            "ORDER BY ts LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    for part in parts:
        _say(f"  {part['component']:<10} {part['spans']:>5} spans, p95 {part['p95_ms']:.0f} ms, "
             f"errors {part['error_rate']:.1%}")  # fmt: skip
    _say("Where to look:", bold=True)
    rows = [
        ("API docs", f"{base}/docs"),
        ("thumbs-up by model", f"{example}   ({body['count']} points)"),
        ("compare two models", compare),
        ("edit ratio by route", f"{base}/v1/metrics/timeseries?metric=edit_ratio&window=30m&group_by=route"),
        ("quality by model", f"{base}/v1/metrics/timeseries?metric=quality&window=1h&group_by=model"),
        ("pipeline components", components),
        *([("a thumbs-down trace", f"{base}/v1/traces/{traced[0]}")] if traced else []),
        ("grounded by index", f"{base}/v1/metrics/timeseries?metric=groundedness&window=1h&group_by=index_version"),
        (
            "SQL",
            f'EVALSTREAM_DATA_DIR={data} evalstream sql "SELECT model, avg(thumbs_up) FROM generations GROUP BY 1"',
        ),
        ("files", f"{data}/{{events,scores,embeddings,dlq}}/dt=*/*.parquet ; logs {data}/*.log"),
    ]
    for label, where in rows:
        _say(f"  {label:<20} {where}")
    sys.stdout.flush()
