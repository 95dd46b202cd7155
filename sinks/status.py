"""Worker status files: what each worker process last said about itself, read by ``GET /v1/pipeline`` and
``evalstream status`` without ever asking a worker (the API reads files only, and a hung worker cannot answer).

Every few seconds a worker writes ``<data_dir>/_status/<worker_id>-<host>-<pid>.json`` (a temporary file renamed
into place, or one object-store PUT, so a reader never sees half of one): who it is, its counters, the consumer
lag of its partitions, its rolling events per second and when its last batch was durable. A file not updated
for :data:`STALE_AFTER_S` seconds is *stale*: the worker died, hangs, or lost the data folder. A worker that
stops cleanly says so (``stopped_at``); files not updated for :data:`FORGET_AFTER_S` are no longer listed.

Example::

    >>> import tempfile
    >>> from datetime import datetime
    >>> root = tempfile.mkdtemp()
    >>> write_status(root, {"worker_id": "w", "pid": 7, "updated_at": "2026-11-30T10:00:00Z",
    ...                     "lag": {"0": 5, "1": 0}, "events_per_s": 120.0})
    '_status/w-7.json'
    >>> [(s["worker_id"], s["state"]) for s in read_statuses(root, now=datetime(2026, 11, 30, 10, 0, 30))]
    [('w', 'running')]
    >>> late = read_statuses(root, now=datetime(2026, 11, 30, 10, 5))
    >>> late[0]["state"], late[0]["stale"], summarize(late)["lag"]
    ('stale', True, {})
    >>> summarize(read_statuses(root, now=datetime(2026, 11, 30, 10, 0, 30)))["lag"]
    {'0': 5, '1': 0}
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sinks.store import Store, open_store

STATUS_DIR = "_status"
STALE_AFTER_S = 60.0  # twelve missed writes (a worker writes every 5 s)
FORGET_AFTER_S = 86400.0  # a worker gone for a day is history, not pipeline health
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def utc_iso(value: datetime) -> str:
    """A time as UTC ISO 8601 with ``Z`` (a naive time is UTC)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_utc(text: str) -> datetime:
    """A time written by :func:`utc_iso` (or any ISO 8601 time) as naive UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def status_name(worker_id: str, pid: int, host: str | None = None) -> str:
    """The status file of one worker process, relative to the data folder (workers on several machines share
    one data folder and one worker id, so the host is part of the name)."""
    name = "-".join(str(part) for part in (worker_id, host, pid) if part is not None)
    return f"{STATUS_DIR}/{_SAFE_NAME.sub('_', name)}.json"


def write_status(data_dir: str | Path | Store, status: dict[str, Any]) -> str:
    """Write one worker's status atomically (a reader sees the old or the new one); returns its path relative to
    the data folder (a folder or an object store). Not fsynced: a status lost in a crash is replaced in 5 s."""
    rel = status_name(str(status["worker_id"]), int(status["pid"]), status.get("host"))
    open_store(data_dir).write_bytes(rel, json.dumps(status, default=str).encode())
    return rel


def read_statuses(data_dir: str | Path | Store, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every worker's last status (forgotten ones left out), with ``age_s``, ``state`` (``running``, ``stale`` or
    ``stopped``) and ``stale``; sorted by worker id and pid. Unreadable files are skipped."""
    current = parse_utc(utc_iso(now or datetime.now(UTC)))
    found = []
    store = open_store(data_dir)
    for rel in store.list_files(STATUS_DIR):
        if not rel.endswith(".json") or rel.rsplit("/", 1)[-1].startswith("."):
            continue
        try:
            status = json.loads(store.read_bytes(rel).decode("utf-8"))
            age = (current - parse_utc(status["updated_at"])).total_seconds()
        except (OSError, ValueError, KeyError, TypeError):
            continue  # removed meanwhile, or not ours
        if age > FORGET_AFTER_S:
            continue
        stopped = bool(status.get("stopped_at"))
        stale = not stopped and age > STALE_AFTER_S
        found.append({**status, "age_s": round(age, 1), "stale": stale,
                      "state": "stopped" if stopped else "stale" if stale else "running"})  # fmt: skip
    return sorted(found, key=lambda s: (str(s.get("worker_id")), int(s.get("pid") or 0)))


def summarize(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """The pipeline from its running workers: consumer lag per partition (the freshest report of each), total lag,
    events per second, late events and the last durable batch. Stale and stopped workers count in nothing."""
    running = sorted((s for s in statuses if s["state"] == "running"), key=lambda s: s["age_s"], reverse=True)
    lag: dict[str, int] = {}
    for status in running:  # oldest first: a fresher report of the same partition (after a rebalance) wins
        lag.update({str(p): int(v) for p, v in (status.get("lag") or {}).items()})
    batches = [s["last_batch_at"] for s in statuses if s.get("last_batch_at")]
    return {
        "lag": dict(sorted(lag.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0])),
        "total_lag": sum(lag.values()),
        "events_per_s": round(sum(float(s.get("events_per_s") or 0.0) for s in running), 2),
        "late_events": sum(int((s.get("counters") or {}).get("late_events", 0)) for s in running),
        "last_batch_at": max(batches, key=parse_utc) if batches else None,
        "workers_running": len(running),
    }
