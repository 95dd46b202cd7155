"""Traffic with an incident planted in event time, and a loopback webhook receiver, for the alerting tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a minute boundary: the windows' edges
ROUTES = ("answer", "search", "summarize")
PER_MINUTE = 30  # generations per route and minute, each with a thumbs up or down


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def incident_traffic(minutes: int, incident: tuple[int, int], sessions: int = 48) -> list[dict[str, Any]]:
    """``minutes`` of traffic on three routes; exactly 70% thumbs up, 20% on ``answer`` during ``incident``
    (minutes [start, end)). Each feedback follows its generation in the same session (so the same partition)."""
    events = []
    for minute in range(minutes):
        for r, route in enumerate(ROUTES):
            bad = route == "answer" and incident[0] <= minute < incident[1]
            ups = round((0.2 if bad else 0.7) * PER_MINUTE)
            for i in range(PER_MINUTE):
                second = minute * 60 + i * 2 + r * 0.5
                gid = f"g-{route}-{minute}-{i}"
                session = f"s{(minute * PER_MINUTE + i + r) % sessions}"
                events.append({"type": "generation", "event_id": f"e-{gid}", "ts": at(second), "session_id": session,
                               "app": "shop", "generation_id": gid, "route": route, "model": "m1",
                               "prompt_version": "v1", "input": f"question {i}", "output": f"answer {i}",
                               "latency_ms": 100.0 + (i * 37) % 400})  # fmt: skip
                events.append({"type": "feedback", "event_id": f"f-{gid}", "ts": at(second + 0.5),
                               "session_id": session, "app": "shop", "generation_id": gid,
                               "thumbs": "up" if i < ups else "down"})  # fmt: skip
    return sorted(events, key=lambda e: datetime.fromisoformat(e["ts"]))


def ticks(second: float, sessions: int = 48) -> list[dict[str, Any]]:
    """One generation per session at ``second``: every partition's watermark moves there."""
    return [{"type": "generation", "event_id": f"tick-{second}-{s}", "ts": at(second), "session_id": f"s{s}",
             "app": "shop", "generation_id": f"tick-{second}-{s}", "route": "tick", "model": "m1",
             "prompt_version": "v1", "input": "t", "output": "t"} for s in range(sessions)]  # fmt: skip


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request; ``answer(n, key)`` picks each response's status
    (it may block, to play a receiver that hangs)."""

    def __init__(self, answer: Callable[[int, str], int] = lambda n, key: 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Idempotency-Key", "")
                with receiver.lock:
                    n = len(receiver.requests)
                    receiver.requests.append({"headers": dict(self.headers), "body": body, "key": key,
                                              "status": None})  # fmt: skip
                status = answer(n, key)
                with receiver.lock:
                    receiver.requests[n]["status"] = status
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        """The requests answered 2xx, their JSON bodies parsed."""
        with self.lock:
            return [{**r, "json": json.loads(r["body"])} for r in self.requests if (r["status"] or 0) // 100 == 2]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


RULES = """
[[receivers]]
name = "ops"
url = "{url}"
secret = "s3cret"
timeout_s = {timeout}
max_attempts = 8

[[rules]]
name = "thumbs-drop"
metric = "thumbs_up"
aggregation = "rate"
comparator = "<"
threshold = 0.45
resolve_threshold = 0.55
min_samples = 10
filters = {{ app = "shop" }}
group_by = ["route"]
severity = "critical"
description = "users stopped liking the answers"
"""
