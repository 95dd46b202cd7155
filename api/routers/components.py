"""``/v1/components``: per pipeline component, latency, errors, and where failures occur.

Request and response::

    GET /v1/components?app=rag-bot&since=2026-11-30T00:00:00Z&until=2026-12-01T00:00:00Z
    -> {"data": [{"component": "retriever", "spans": 9120, "p50_ms": 120.0, "p95_ms": 410.0, "usual_p95_ms": 180.0,
                  "error_rate": 0.02,
                  "failed_generations": 610, "errored_in_failed": 140, "slow_in_failed": 220,
                  "implicated_in_failed": 330, "implicated_share_in_failed": 0.54,
                  "ok_generations": 8100, "implicated_in_ok": 510, "implicated_share_in_ok": 0.063}, …],
        "count": 4, "signals": ["thumbs_down", …]}

From the span scores (``span_duration_ms``, ``span_error``) whose time is in the window. A generation failed as
``/v1/clusters`` defines it (the evaluation config's ``clusters.signals``, or ``signals``). For each component,
among the failed generations with a span of it: how many of those spans errored, how many ran slower than the
component's usual p95 (``slow``), and either (``implicated``); the same among the generations that did not fail,
for contrast. ``usual_p95_ms`` is the component's p95 over the spans of generations that did not fail (its whole
p95 would count the failures' own slowness as usual). Components are listed by ``implicated_share_in_failed``:
where failures occur.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from api.deps import DuckDB, EvalConfig, RequestTime
from api.routers.metrics import window
from api.tracing import components
from metrics.analysis import AnalysisConfigError, analysis_settings, signals_from_text

router = APIRouter(prefix="/v1", tags=["components"])


@router.get("/components")
def get_components(
    db: DuckDB,
    config: EvalConfig,
    app: Annotated[str | None, Query(max_length=256)] = None,
    since: Annotated[RequestTime | None, Query(description="Inclusive start, RFC 3339; default until - 24 h")] = None,
    until: Annotated[RequestTime | None, Query(description="Exclusive end, RFC 3339; default now")] = None,
    signals: Annotated[
        str | None, Query(max_length=512, description="Comma-separated failure signals; default the config's")
    ] = None,
) -> dict[str, Any]:
    start, end = window(since, until, timedelta(hours=24))
    failure = analysis_settings(config, app).clusters
    try:
        chosen = signals_from_text(signals, "signals")
    except AnalysisConfigError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    if chosen is not None:
        failure = replace(failure, signals=chosen)
    data = components(db, failure, {"since": start, "until": end, "app": app})
    return {"data": data, "count": len(data), "signals": list(failure.signals)}
