"""``evalstream demo``: a local broker, the worker, the API and the simulator's story, then what it shows, and where.

Uses ``EVALSTREAM_BOOTSTRAP_SERVERS`` when set, otherwise starts a local Apache Kafka broker (jars from Maven
Central on first use). Everything is written under one data folder (a temporary one by default). The simulator
(:mod:`streams.local.simulate`) sends half an hour of history with its incidents first, so the live windows
close and the alert rules (``demo_rules.toml``) fire within a minute or two, then live traffic. The alerts go to a
webhook receiver the demo runs on loopback. The demo polls the API and prints each finding as soon as it shows:
the A/B difference, the model switch's drift, the failing class's cluster, each alert with its delivery, and the
slow retriever (docs/demo.md).

Example (the rules file points at the demo's own receiver; every delivery is recorded)::

    >>> hook = Webhook()
    >>> RECEIVER_PLACEHOLDER in DEMO_RULES.read_text() and hook.url.startswith("http://127.0.0.1:")
    True
    >>> request = urllib.request.Request(hook.url, data=b'{"state": "firing"}', headers={"Idempotency-Key": "a:firing"})
    >>> urllib.request.urlopen(request, timeout=5).status, hook.deliveries
    (200, [('a:firing', {'state': 'firing'})])
    >>> hook.close()
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import typer

from sinks.catalog import connect, landed_counts
from streams.local.launch import spawn_cli, stop_all, wait_for
from streams.local.simulate import APP, DEFAULT_INCIDENTS, FAILING_ROUTE, Malformed, Progress, run_simulation
from streams.sdk.publisher import Publisher
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.evalconfig import EXAMPLE_CONFIG

DEMO_RULES = Path(__file__).with_name("demo_rules.toml")
RECEIVER_PLACEHOLDER = "http://127.0.0.1:9/evalstream-demo-webhook"  # in DEMO_RULES, replaced by the receiver's
STORY_TIMEOUT_S = 240.0  # after the history landed: time enough for every finding on 2 cores


def _say(text: str, **style: object) -> None:
    typer.secho(text, **style)  # type: ignore[arg-type]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _http_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)
    return False


class Webhook:
    """A webhook receiver on 127.0.0.1 that answers 200 and records each delivery as (idempotency key, JSON)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with contextlib.suppress(ValueError):
                    hook.deliveries.append((self.headers.get("Idempotency-Key", ""), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/evalstream-demo-webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Api:
    """GET requests to the demo's API with its key."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key

    def url(self, path: str, **params: Any) -> str:
        return f"{self.base}{path}" + (f"?{urllib.parse.urlencode(params, safe=':,')}" if params else "")

    def get(self, url: str) -> Any:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            return json.loads(resp.read())


def _z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# the alerts the story promises (the fourth, retriever-slow, is printed when it comes, but not waited for)
STORY_ALERTS = frozenset({"thumbs-up-drop", "pii-in-outputs", "latency-drift"})


class Story:
    """The findings of the simulator's story, each looked for through the API until it shows, printed once."""

    def __init__(self, api: Api, start: datetime, hook: Webhook, began: float) -> None:
        self.api, self.hook, self.began = api, hook, began
        at = {i.kind: (start + timedelta(seconds=i.start_s), i.duration_s) for i in DEFAULT_INCIDENTS}
        self.span = {k: (t, t + timedelta(seconds=d or 600)) for k, (t, d) in at.items()}  # open-ended: 10 min
        self.start, self.alerts_seen, self.failing_route_alerted = start, set[str](), False
        self.rules_delivered: set[str] = set()
        self.checks: dict[str, Callable[[], str | None]] = {
            "A/B": self.ab, "drift": self.drift, "cluster": self.cluster, "alert": self.alert,
            "retriever": self.retriever,
        }  # fmt: skip
        self.found: set[str] = set()

    def say(self, line: str) -> None:
        elapsed = int(time.monotonic() - self.began)
        _say(f"[{elapsed // 60}:{elapsed % 60:02d}] {line}", bold=True)

    def poll(self) -> bool:
        """Look for what has not shown yet (and for new alerts); True once everything has."""
        for name, check in self.checks.items():
            if name in self.found and name != "alert":
                continue
            try:
                line = check()
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                line = None  # not there yet (or the API is busy): asked again at the next poll
            if line and name not in self.found:
                self.found.add(name)
                self.say(line)
        return self.found == set(self.checks)

    def ab(self) -> str | None:
        url = self.api.url("/v1/compare", dimension="prompt_version", a="v1", b="v2", metrics="thumbs_up,latency_ms")
        row = self.api.get(url)["data"][0]
        if not (row["significant"] and row["difference"] > 0):
            return None
        return (f"A/B: prompt v2 beats v1 on thumbs-up, {row['b']['value']:.2f} vs {row['a']['value']:.2f} "
                f"(n = {row['b']['n']} and {row['a']['n']}, p = {row['p_value']:.1g})\n      {url}")  # fmt: skip

    def drift(self) -> str | None:
        switch, _ = self.span["model-switch"]
        url = self.api.url(
            "/v1/drift", signal="output_embedding", app=APP, reference_since=_z(self.start), reference_until=_z(switch),
            current_since=_z(switch), current_until=_z(switch + timedelta(minutes=10)),
        )  # fmt: skip
        point = self.api.get(url)["data"][0]
        if not point["drifted"]:
            return None
        return (f"drift: the outputs changed when llama-3.1-8b replaced claude-3-5-haiku (MMD² "
                f"{point['statistic']:.3f}, p = {point['p_value']:.1g})\n      {url}")  # fmt: skip

    def cluster(self) -> str | None:
        since, until = self.span["failing-class"]
        url = self.api.url("/v1/clusters", app=APP, since=_z(since), until=_z(until))
        found = [c for c in self.api.get(url)["data"] if "refund" in c["label"]]
        if not found:
            return None
        c = found[0]
        return (f"failure cluster {c['cluster_id']} \"{c['label']}\": {c['failures']} of {c['size']} failed, lift "
                f"{c['lift']:.1f}\n      {url}")  # fmt: skip

    def alert(self) -> str | None:
        """Each alert once its webhook delivery is in the delivery log; found with the failing route's."""
        listed = self.api.get(self.api.url("/v1/alerts", since=_z(self.start)))["data"]
        for incident in sorted(listed, key=lambda i: i["fired_at"]):
            url = self.api.url(f"/v1/alerts/{incident['alert_id']}")
            if incident["alert_id"] in self.alerts_seen or not any(
                d.get("delivered") for d in self.api.get(url).get("deliveries", [])
            ):
                continue
            self.alerts_seen.add(incident["alert_id"])
            group = "".join(f" on {k} {v}" for k, v in incident["group"].items() if k != "app" and v)
            value = "" if incident["value"] is None else f", value {incident['value']:.3g}"
            self.say(f"alert {incident['rule']} fired{group} ({incident['severity']}{value}), delivered to the "
                     f"demo's webhook\n      {url}")  # fmt: skip
            self.rules_delivered.add(incident["rule"])
            if incident["rule"] == "thumbs-up-drop" and incident["group"].get("route") == FAILING_ROUTE:
                self.failing_route_alerted = True
        if not self.failing_route_alerted or not self.rules_delivered >= STORY_ALERTS:
            return None  # the story's alerts fire within seconds of each other: all of them, then it is told
        return f"alerts: {len(self.alerts_seen)} fired so far, {len(self.hook.deliveries)} webhook deliveries"

    def retriever(self) -> str | None:
        since, until = self.span["slow-retriever"]
        before = self.api.url("/v1/components", app=APP, since=_z(self.start), until=_z(since))
        during = self.api.url("/v1/components", app=APP, since=_z(since), until=_z(until))
        usual = {c["component"]: c for c in self.api.get(before)["data"]}["retriever"]
        slow = {c["component"]: c for c in self.api.get(during)["data"]}["retriever"]
        if slow["p95_ms"] < 5 * usual["p95_ms"]:
            return None
        return (f"slow retriever: p95 {slow['p95_ms']:.0f} ms and {slow['error_rate']:.0%} errors during the "
                f"incident, {usual['p95_ms']:.0f} ms before\n      {during}")  # fmt: skip


def _landed(data: Path) -> None:
    con = connect(data)
    try:
        types = con.execute("SELECT type, count(*) FROM events GROUP BY ALL ORDER BY 2 DESC").fetchall()
        reasons = con.execute("SELECT reason, count(*) FROM dlq GROUP BY ALL ORDER BY 2 DESC").fetchall()
    finally:
        con.close()
    _say("• landed in Parquet: " + ", ".join(f"{n:,} {t}" for t, n in types))
    _say(f"• dead-lettered: {sum(n for _, n in reasons)} malformed messages, e.g. " + "; ".join(
        f"{reason[:60]} ({n})" for reason, n in reasons[:3]))  # fmt: skip


def run_demo(
    rate: float = 5.0,
    backfill_min: float = 30.0,
    seed: int = 1,
    duration: float = 0,
    port: int = 8000,
    data_dir: Path | None = None,
) -> int:
    """The demo; returns the exit code (1: the story was not told within ``STORY_TIMEOUT_S``)."""
    from streams.local.broker import BrokerError, LocalBroker

    data = Path(data_dir or tempfile.mkdtemp(prefix="evalstream-demo-")).resolve()
    data.mkdir(parents=True, exist_ok=True)
    if not _port_free(port):
        _say(f"port {port} is busy; pass --port", fg="red", err=True)
        return 2
    began = time.monotonic()
    broker, hook, children = None, Webhook(), []
    stopping, sim = threading.Event(), None
    # SIGTERM stops the demo as Ctrl-C does (in the main thread, where signals go), so nothing is left behind. The
    # flag stays set should the KeyboardInterrupt be swallowed on its way (CPython ignores exceptions raised in
    # some callbacks, e.g. a dict lookup's __eq__): the loops below check it too
    interrupted = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    previous_int = signal.signal(signal.SIGINT, on_signal)
    previous = signal.signal(signal.SIGTERM, on_signal)
    bootstrap = os.environ.get("EVALSTREAM_BOOTSTRAP_SERVERS")
    try:
        if not bootstrap:
            _say("• starting a local Apache Kafka broker (first run downloads its jars with Maven)…")
            try:
                broker = LocalBroker.start(data / "kafka")
            except BrokerError as exc:
                _say(f"error: {exc}", fg="red", err=True)
                return 1
            bootstrap = broker.bootstrap_servers
        _say(f"• Kafka at {bootstrap}; data in {data}")
        rules = data / "alert-rules.toml"
        rules.write_text(DEMO_RULES.read_text("utf-8").replace(RECEIVER_PLACEHOLDER, hook.url), "utf-8")
        settings = Settings(
            bootstrap_servers=bootstrap, data_dir=data, eval_config=EXAMPLE_CONFIG, alert_rules=rules,
            worker_id=f"evalstream-demo-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        env, key = settings.to_env(), secrets.token_urlsafe(24)
        ensure_topics(settings)
        _say("• starting the worker and the API…")
        children.append(spawn_cli(["worker"], env, data / "worker.log"))
        children.append(spawn_cli(["api", "--port", str(port)], {**env, "EVALSTREAM_API_KEYS": key}, data / "api.log"))
        api = Api(f"http://127.0.0.1:{port}", key)
        wait_for(lambda: _http_ok(f"{api.base}/health"), 60, what="the API", alive=children[1])
        progress, backfilled = Progress(), threading.Event()
        sim = threading.Thread(target=_simulate, daemon=True, kwargs={
            "bootstrap": bootstrap, "topic": settings.events_topic, "seed": seed, "rate": rate,
            "backfill_s": backfill_min * 60, "stop": stopping, "progress": progress, "backfilled": backfilled,
        })  # fmt: skip
        sim.start()
        _say(f"• simulating {APP} (seed {seed}): {backfill_min:g} minutes of history with incidents "
             f"({', '.join(map(str, DEFAULT_INCIDENTS))}), then {rate:g} events/s live")  # fmt: skip
        while not backfilled.wait(0.5):
            if not sim.is_alive():
                _say("error: the simulator stopped; see above", fg="red", err=True)
                return 1
        history = (progress.events, progress.malformed)
        try:
            wait_for(lambda: all(a >= b for a, b in zip(landed_counts(data), history, strict=True)) or None, 300, 1.0,
                     "the worker", alive=children[0])  # fmt: skip
        except (TimeoutError, RuntimeError) as exc:
            _say(f"the worker did not land the history ({exc}); see {data / 'worker.log'}", fg="red", err=True)
            return 1
        _landed(data)
        _say("Where to look:", bold=True)
        _say(f"  dashboard   {api.base}/   (API key: {key})")
        _say(f"  API         curl -H 'Authorization: Bearer {key}' {api.base}/v1/alerts")
        _say(f'  SQL         EVALSTREAM_DATA_DIR={data} evalstream sql "SELECT * FROM alert_deliveries"')
        _say(f"  logs        {data}/worker.log, {data}/api.log")
        _say("What the story shows, as it shows (docs/demo.md):", bold=True)
        assert progress.start is not None
        story, told_by = Story(api, progress.start, hook, began), time.monotonic() + STORY_TIMEOUT_S
        told = story.poll()
        while not told and time.monotonic() < told_by and all(c.poll() is None for c in children):
            time.sleep(3)
            if interrupted.is_set():
                raise KeyboardInterrupt
            told = story.poll()
        if not told:
            missing = ", ".join(sorted(set(story.checks) - story.found))
            _say(f"not shown within {STORY_TIMEOUT_S:.0f} s: {missing}; see {data}/worker.log", fg="red", err=True)
        _say(f"• the story took {time.monotonic() - began:.0f} s; live traffic goes on")
        if duration > 0:
            time.sleep(duration)
            return 0 if told else 1
        _say("Press Ctrl-C to stop.", bold=True)
        for tick in itertools.count(1):
            if not (all(c.poll() is None for c in children) and sim.is_alive()):
                _say("a process of the demo stopped; see the logs", fg="red", err=True)
                return 1
            time.sleep(1)
            if interrupted.is_set():
                raise KeyboardInterrupt
            if tick % 10 == 0:
                story.poll()  # new alerts, and what had not shown
        raise AssertionError("unreachable")
    except KeyboardInterrupt:
        _say("\n• stopping…")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopping.set()
        stop_all(children, timeout_s=20)  # the API and the worker shut down side by side
        if sim is not None:
            sim.join(15)  # a daemon thread: should its last flush hang, the process does not wait for it
        hook.close()
        if broker is not None:
            broker.stop(timeout_s=20)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous)
        sys.stdout.flush()


def _simulate(
    bootstrap: str, topic: str, seed: int, rate: float, backfill_s: float, stop: threading.Event,
    progress: Progress, backfilled: threading.Event,
) -> None:  # fmt: skip
    """The simulator's thread: history, then live traffic until ``stop``."""
    with Publisher(bootstrap, topic, config={"log_level": 3}) as pub:

        def send(item: dict[str, Any] | Malformed) -> None:
            if isinstance(item, Malformed):
                pub.publish_raw(item.value, item.key)
            else:
                pub.publish(item)

        def history_sent(p: Progress) -> None:
            pub.flush()
            backfilled.set()

        run_simulation(send, seed=seed, rate=rate, backfill_s=backfill_s, stop=stop, progress=progress,
                       on_backfilled=history_sent)  # fmt: skip
