"""Benchmark: does alerting slow the pipeline, and does a receiver that hangs?

The same traffic (generations spread over ``--minutes`` of event time, each with a thumbs up or down, forty prompt
versions) is published to a real Kafka broker, then one ``evalstream worker`` (embeddings off) drains it, three
ways, alternating, ``--repeats`` times each:

- ``none``: no alert rules (the live windows and the evaluator still run: they are always on);
- ``healthy``: two rules that fire and resolve all along (a guardrail per prompt version, and a thumbs-up rate
  per prompt version with a 50/50 split, so it flips), delivered to a receiver that answers at once;
- ``hanging``: the same, plus a second receiver that accepts each request and never answers (30 s timeout,
  8 attempts).

The rate is events per second from the worker's first Parquet file to its last (as ``bench/pipeline.py``). Target:
``hanging`` / ``none`` ≥ 0.9 (a hanging receiver costs the scoring nothing; the noise of these machines is about
that size), with alerts delivered to the healthy receiver during the run.

    python bench/alerts.py [--generations 40000] [--minutes 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
RULES = """
[[receivers]]
name = "healthy"
url = "{healthy}"
{hanging}
[[rules]]
name = "latency-seen"
kind = "guardrail"
metrics = ["latency_ms"]
group_by = ["prompt_version"]

[[rules]]
name = "thumbs-flip"
metric = "thumbs_up"
aggregation = "rate"
comparator = "<"
threshold = 0.5
group_by = ["prompt_version"]
"""
HANGING = """
[[receivers]]
name = "hanging"
url = "{url}"
timeout_s = 30
max_attempts = 8
"""


def traffic(generations: int, minutes: int) -> list[dict[str, Any]]:
    rng = random.Random(0)
    step = minutes * 60 / generations
    events = []
    for i in range(generations):
        ts = (T0 + timedelta(seconds=i * step)).isoformat().replace("+00:00", "Z")
        base = {"ts": ts, "session_id": f"s{i % 97}", "app": "shop", "generation_id": f"g{i}"}
        events.append({**base, "type": "generation", "event_id": f"e{i}", "route": "answer", "model": "m1",
                       "prompt_version": f"v{i % 40}", "input": f"question {i % 300}", "output": f"answer {i}",
                       "latency_ms": 200.0 + i % 700})  # fmt: skip
        events.append({**base, "type": "feedback", "event_id": f"f{i}", "thumbs": rng.choice(("up", "down"))})
    return events


class Receiver:
    """A loopback webhook receiver that answers 200 at once, or never (``hang``); counts the requests."""

    def __init__(self, hang: bool) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                if hang:
                    time.sleep(3600)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def alerts_written(data: Path) -> int:
    from sinks.catalog import connect

    found = connect(data).execute("SELECT count(*) FROM alerts").fetchone()
    return int(found[0]) if found else 0


def run_once(bootstrap: str, events: list[dict[str, Any]], case: str, work: Path) -> dict[str, Any]:
    from sinks.catalog import connect
    from streams.local.launch import spawn_cli, stop, wait_for
    from streams.sdk.publisher import Publisher
    from streams.settings import Settings
    from streams.topics import ensure_topics
    from streams.worker.app import TABLES

    tag = f"{case}-{int(time.time() * 1000)}"
    healthy, hanging = Receiver(hang=False), Receiver(hang=True)
    rules = None
    if case != "none":
        rules = work / f"{tag}.toml"
        extra = HANGING.format(url=hanging.url) if case == "hanging" else ""
        rules.write_text(RULES.format(healthy=healthy.url, hanging=extra))
    settings = Settings(
        bootstrap_servers=bootstrap, events_topic=f"bench.alerts.{tag}", metrics_topic=f"bench.metrics.{tag}",
        alerts_topic=f"bench.alerts-out.{tag}", worker_id=f"bench-alerts-{tag}", data_dir=work / tag / "data",
        embed_backend="off", alert_rules=rules, flush_max_events=1000, window_idle_s=3600.0,
    )  # fmt: skip
    ensure_topics(settings, tables=TABLES)
    with Publisher(bootstrap, settings.events_topic) as pub:
        pub.publish_many(events)
    log_path = work / tag / "worker.log"
    worker = spawn_cli(["worker"], settings.to_env(), log_path)
    files: dict[Path, float] = {}
    from pyarrow import parquet as pq

    rows: dict[Path, int] = {}

    def landed() -> int:
        for path in (settings.data_dir / "events").glob("dt=*/*.parquet"):
            if path not in files:
                files[path], rows[path] = path.stat().st_mtime, pq.ParquetFile(path).metadata.num_rows
        return sum(rows.values())

    try:
        wait_for(lambda: landed() >= len(events) or None, 1800, 0.2, "the worker", alive=worker)
        seen_healthy = healthy.requests
        if case != "none":  # the last windows' alerts, after the measurement
            wait_for(lambda: alerts_written(settings.data_dir) or None, 120, 0.5, "the alerts", alive=worker)
    finally:
        stop(worker)
    start, end = min(files.values()), max(files.values())
    alerts = connect(settings.data_dir).execute("SELECT count(*) FROM alerts").fetchone()
    return {"events_per_s": len(events) / (end - start), "alerts": alerts[0] if alerts else 0,
            "healthy": seen_healthy, "hanging": hanging.requests}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=40_000)
    parser.add_argument("--minutes", type=int, default=30, help="event time the traffic spans")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from streams.local.broker import LocalBroker

    work = Path(tempfile.mkdtemp(prefix="evalstream-bench-alerts-"))
    events = traffic(args.generations, args.minutes)
    print(f"{args.generations:,} generations, {len(events):,} events over {args.minutes} minutes of event time")
    broker = None
    bootstrap = os.environ.get("EVALSTREAM_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalBroker.start(work / "kafka")
        bootstrap = broker.bootstrap_servers
    cases = ["none", "healthy", "hanging"]
    rates: dict[str, list[float]] = {c: [] for c in cases}
    try:
        for r in range(args.repeats):
            for case in cases if r % 2 == 0 else cases[::-1]:
                result = run_once(bootstrap, events, case, work)
                rates[case].append(result["events_per_s"])
                print(f"round {r + 1} {case:8s} {result['events_per_s']:8,.0f} events/s; alerts written "
                      f"{result['alerts']}, requests to the healthy receiver during the run {result['healthy']}, "
                      f"to the hanging one {result['hanging']}")  # fmt: skip
    finally:
        if broker is not None:
            broker.stop()
    base = statistics.median(rates["none"])
    print(f"\n| case | events/s (median of {args.repeats}) | runs | / none |")
    print("|---|---|---|---|")
    for case, values in rates.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {case} | {median:,.0f} | {runs} | {median / base:.2f} |")
    print("target: hanging / none >= 0.9")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
