"""The live windows, the alerts and their webhook deliveries as Parquet datasets (the evaluator writes them).

- ``windows``: one row per closed window, group and metric, merged over the source partitions: count, exact sum,
  mean, min, max, p50/p95/p99 and ``late_events``, plus the KLL sketch (``sketch``, :class:`QuantileSketch` text)
  so that longer windows can be merged with their quantiles. One file per window and app, named after them: a
  replay rewrites the same file.
- ``alerts``: one row per state change (``firing``, ``resolved``) of an incident (``alert_id``); one file each.
- ``alert_deliveries``: one row per webhook attempt (a log: files are appended, never rewritten).

Example::

    >>> import tempfile
    >>> from datetime import datetime
    >>> from metrics.windows import WindowAggregate
    >>> data = Path(tempfile.mkdtemp())
    >>> agg = WindowAggregate().update_many([1.0, 0.0, 1.0])
    >>> row = window_row(1796032800, 60, {"app": "chat", "route": "answer"}, "thumbs_up", agg, partitions=2)
    >>> row["count"], row["mean"], row["window_start"]
    (3, 0.6666666666666666, datetime.datetime(2026, 11, 30, 10, 0))
    >>> write_windows(data, 1796032800, "chat", [row])
    'windows/dt=2026-11-30/window-001796032800-7ecde348ff9c.parquet'
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from metrics.windows import WindowAggregate
from sinks.schemas import TS
from sinks.store import Store, open_store

WINDOWS_SCHEMA = pa.schema([
    ("window_start", TS), ("window_end", TS), ("app", pa.string()), ("route", pa.string()), ("model", pa.string()),
    ("prompt_version", pa.string()), ("index_version", pa.string()), ("component", pa.string()),
    ("metric", pa.string()), ("count", pa.int64()), ("sum", pa.float64()), ("mean", pa.float64()),
    ("min", pa.float64()), ("max", pa.float64()), ("p50", pa.float64()), ("p95", pa.float64()),
    ("p99", pa.float64()), ("late_events", pa.int64()), ("sketch", pa.string()), ("partitions", pa.int32()),
    ("written_at", TS),
])  # fmt: skip

ALERTS_SCHEMA = pa.schema([
    ("alert_id", pa.string()), ("state", pa.string()), ("rule", pa.string()), ("rule_version", pa.string()),
    ("kind", pa.string()), ("severity", pa.string()), ("description", pa.string()), ("app", pa.string()),
    ("group", pa.map_(pa.string(), pa.string())), ("metric", pa.string()), ("aggregation", pa.string()),
    ("comparator", pa.string()), ("threshold", pa.float64()), ("value", pa.float64()), ("samples", pa.int64()),
    ("p_value", pa.float64()), ("window_start", TS), ("window_end", TS), ("changed_at", TS), ("detected_at", TS),
    ("windows", pa.list_(TS)),
])  # fmt: skip

DELIVERIES_SCHEMA = pa.schema([
    ("attempted_at", TS), ("idempotency_key", pa.string()), ("alert_id", pa.string()), ("state", pa.string()),
    ("receiver", pa.string()), ("url", pa.string()), ("attempt", pa.int32()), ("status_code", pa.int32()),
    ("error", pa.string()), ("delivered", pa.bool_()), ("final", pa.bool_()), ("duration_ms", pa.float64()),
])  # fmt: skip


def utc(epoch: float) -> datetime:
    """Epoch seconds as the naive UTC datetime the datasets store."""
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def window_row(
    start: int, width: int, labels: Mapping[str, str | None], metric: str, agg: WindowAggregate, partitions: int
) -> dict[str, Any]:
    """One ``windows`` row."""
    value = agg.get()
    names = ("app", "route", "model", "prompt_version", "index_version", "component")
    return {
        "window_start": utc(start), "window_end": utc(start + width), **{n: labels.get(n) for n in names},
        "metric": metric, "count": agg.count, "sum": agg.sum if value else None,
        "mean": value.mean if value else None, "min": agg.low, "max": agg.high,
        "p50": value.p50 if value else None, "p95": value.p95 if value else None,
        "p99": value.p99 if value else None, "late_events": agg.late,
        "sketch": agg.sketch.to_text() if agg.count else None, "partitions": partitions,
        "written_at": datetime.now(UTC).replace(tzinfo=None),
    }  # fmt: skip


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _write(data_dir: str | Path | Store, rel: str, table: pa.Table) -> str:
    open_store(data_dir).write_parquet(rel, table)
    return rel


def write_windows(data_dir: str | Path | Store, start: int, app: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of one window and app, as one file named after both (a replay overwrites it); returns its path
    relative to the data folder (which may be an object store)."""
    rel = f"windows/dt={utc(start).date().isoformat()}/window-{start:012d}-{_digest(app)}.parquet"
    return _write(data_dir, rel, pa.Table.from_pylist(list(rows), schema=WINDOWS_SCHEMA))


def alert_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """An alert record (the evaluator's, with epoch-second times) as an ``alerts`` row."""
    row = {name: record.get(name) for name in ALERTS_SCHEMA.names}
    for name in ("window_start", "window_end", "changed_at", "detected_at"):
        row[name] = utc(record[name]) if record.get(name) is not None else None
    row["windows"] = [utc(s) for s in record.get("windows") or ()]
    row["group"] = [(k, "" if v is None else str(v)) for k, v in sorted((record.get("group") or {}).items())]
    return row


def write_alert(data_dir: str | Path | Store, record: Mapping[str, Any]) -> str:
    """One state change of an incident, as its own file (named after the incident and the state)."""
    row = alert_row(record)
    rel = f"alerts/dt={row['changed_at'].date().isoformat()}/alert-{record['alert_id']}-{record['state']}.parquet"
    return _write(data_dir, rel, pa.Table.from_pylist([row], schema=ALERTS_SCHEMA))


def write_deliveries(data_dir: str | Path | Store, rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Append webhook attempts to the delivery log (a new file each call; None when there is nothing)."""
    if not rows:
        return None
    day = datetime.now(UTC).date().isoformat()
    rel = f"alert_deliveries/dt={day}/deliveries-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}.parquet"
    return _write(data_dir, rel, pa.Table.from_pylist(list(rows), schema=DELIVERIES_SCHEMA))


def alert_json(record: Mapping[str, Any]) -> bytes:
    """An alert record as the ``llm.alerts`` message (JSON)."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True, default=str).encode()
