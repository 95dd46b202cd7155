"""``/v1/traces/{trace_id}``: one trace as a person opens it from an alert or a failure cluster's example.

Request and response::

    GET /v1/traces/4bf92f3577b34da6a3ce929d0e0e4736
    -> {"trace_id": "4bf9…", "span_count": 3,
        "spans": [{"span_id": "a1", "parent_span_id": null, "component": "router", "name": "route", "start": "…",
                   "end": "…", "duration_ms": 12.0, "status": "ok", "children": [{"span_id": "b2", …}]}],
        "generations": [{"generation_id": "g-…", "model": "…", "thumbs_up": 0.0, "regenerated": 1, …,
                         "scores": [{"metric": "latency_ms", "value": 812.0, …}],
                         "follow_ups": [{"type": "feedback", "thumbs": "down", "ts": "…"}, …]}]}

A span whose parent is not in the trace is a root marked ``orphan``; parent links that loop are cut where the loop
closes (``cycle``). Unknown trace: 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from api.deps import DuckDB
from api.tracing import trace

router = APIRouter(prefix="/v1", tags=["traces"])


@router.get("/traces/{trace_id}")
def get_trace(db: DuckDB, trace_id: Annotated[str, Path(min_length=1, max_length=512)]) -> dict[str, Any]:
    found = trace(db, trace_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no span or generation with trace_id {trace_id!r}")
    return found
