"""``GET /v1/pipeline``: is the pipeline keeping up? From what the workers wrote, never from a live worker.

The workers' status files (:mod:`sinks.status`, written every 5 s) give each worker's state (``running``,
``stale`` when its file is over a minute old, ``stopped``), consumer lag per partition, events per second, late
events and the last durable batch; the ``dlq`` dataset gives the dead letters (how many, and the latest ten with
their reasons).

Request and response::

    GET /v1/pipeline
    -> {"workers": [{"worker_id": "evalstream-worker", "pid": 4711, "host": "eval-1", "state": "running",
                     "stale": false, "age_s": 2.1, "updated_at": "2026-11-30T10:00:02.000Z", "partitions": [0, 1, 2],
                     "lag": {"0": 12, "1": 0, "2": 3}, "events_per_s": 840.5, "last_batch_at": "…",
                     "counters": {"valid": 120000, "dead_lettered": 20, "late_events": 4, …}, …}],
        "lag": {"0": 12, "1": 0, "2": 3}, "total_lag": 15, "events_per_s": 840.5, "late_events": 4,
        "last_batch_at": "2026-11-30T10:00:01.500Z", "workers_running": 1, "stale_after_s": 60.0,
        "dlq": {"count": 20, "latest": [{"received_at": "2026-11-30T09:59:58Z",
                                         "reason": "malformed JSON: …", "source": "llm.events:3:1042"}, …]}}

Example (a fresh data folder: no worker yet, no dead letters)::

    >>> import tempfile
    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> from api.settings import ApiSettings, get_settings
    >>> app = FastAPI()
    >>> app.include_router(router)
    >>> app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tempfile.mkdtemp())
    >>> answer = TestClient(app).get("/v1/pipeline").json()
    >>> answer["workers"], answer["total_lag"], answer["dlq"]
    ([], 0, {'count': 0, 'latest': []})
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import DuckDB, SettingsDep
from api.queries import utc_text
from sinks.catalog import query
from sinks.status import STALE_AFTER_S, read_statuses, summarize

router = APIRouter(prefix="/v1", tags=["pipeline"])

LATEST_DEAD_LETTERS = 10

_DLQ_COUNT = "SELECT count(*) FROM dlq"
_DLQ_LATEST = """
SELECT received_at, reason, _topic, _partition, _offset FROM dlq
ORDER BY received_at DESC, _topic, _partition, _offset DESC
LIMIT $limit
"""


@router.get("/pipeline")
def get_pipeline(settings: SettingsDep, db: DuckDB) -> dict[str, Any]:
    """Workers, consumer lag, throughput and dead letters (see the module docstring)."""
    workers = read_statuses(settings.data_dir)
    count = int(query(db, _DLQ_COUNT)[1][0][0])  # type: ignore[call-overload]
    _, rows = query(db, _DLQ_LATEST, {"limit": LATEST_DEAD_LETTERS})
    latest = [
        {"received_at": utc_text(r[0]), "reason": r[1], "source": f"{r[2]}:{r[3]}:{r[4]}"}  # type: ignore[arg-type]
        for r in rows
    ]
    return {"workers": workers, **summarize(workers), "stale_after_s": STALE_AFTER_S,
            "dlq": {"count": count, "latest": latest}}  # fmt: skip
