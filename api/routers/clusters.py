"""``/v1/clusters``: the prompt classes that fail systematically in a window, ranked, named and with examples.

Request and response (docs/api.md has every field)::

    GET /v1/clusters?app=support-bot&since=2026-11-30T00:00:00Z&until=2026-12-01T00:00:00Z&signals=thumbs_down,error
    -> {"data": [{"cluster_id": "c-17", "rank": 1, "label": "refund, order, broken", "size": 412, "failures": 301,
                  "failure_rate": 0.73, "baseline_failure_rate": 0.12, "lift": 6.1, "signals": {...},
                  "examples": [...], "models": [...], "prompt_versions": [...], "first_seen": "…", "last_seen": "…",
                  "created_at": "…"}],
        "count": 1, "failures": 2380, "noise": 1204, "generations": 19800, "without_embeddings": 31, …}
    GET /v1/clusters/c-17 -> the cluster as its latest run stored it, with its members

Each call clusters the window (off the event loop: FastAPI runs this synchronous route in its thread pool) and
stores the run, so an id carries over to the next call when its centroid matches; the same request within
``EVALSTREAM_CLUSTERS_CACHE_S`` seconds (default 60) gets the stored answer without clustering again.

Example (a request refused before anything is read)::

    >>> import tempfile
    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> from api.settings import ApiSettings, get_settings
    >>> app = FastAPI()
    >>> app.include_router(router)
    >>> app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tempfile.mkdtemp())
    >>> TestClient(app).get("/v1/clusters", params={"signals": "thumbs_down,sideways"}).json()["detail"]
    "signals: unknown signal 'sideways' (known: thumbs_down, regenerated, refreshed, edited, guardrail, pii, error, \
low_quality)"
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from api.clustering import ClusterCache, ClusterRequest, find_clusters
from api.deps import DuckDB, EvalConfig, RequestTime, SettingsDep
from api.responses import NOT_FOUND
from api.routers.metrics import utc_text, window
from metrics.analysis import AnalysisConfigError, analysis_settings, signals_from_text
from sinks.catalog import query

router = APIRouter(prefix="/v1", tags=["clusters"])

DEFAULT_WINDOW = timedelta(hours=24)


@lru_cache(maxsize=16)
def get_cache(data_dir: str, ttl_s: float) -> ClusterCache:
    """One answer cache per data folder, made on first use."""
    return ClusterCache(ttl_s)


@router.get("/clusters")
def get_clusters(
    db: DuckDB,
    settings: SettingsDep,
    config: EvalConfig,
    app: Annotated[str | None, Query(max_length=256)] = None,
    route: Annotated[str | None, Query(max_length=256)] = None,
    since: Annotated[RequestTime | None, Query(description="Inclusive start, RFC 3339; default until - 24 h")] = None,
    until: Annotated[RequestTime | None, Query(description="Exclusive end, RFC 3339; default now")] = None,
    signals: Annotated[
        str | None,
        Query(max_length=512, description="Comma-separated failure signals; default the evaluation config's"),
    ] = None,
    min_lift: Annotated[float, Query(ge=0, le=1e6, description="Leave out clusters with a lower lift")] = 1.0,
    alpha: Annotated[
        float, Query(gt=0, le=1, description="Leave out clusters whose adjusted p-value is not below this")
    ] = 0.01,
) -> dict[str, Any]:  # fmt: skip
    start, end = window(since, until, DEFAULT_WINDOW, to_minute=True)
    try:
        chosen = signals_from_text(signals, "signals")
    except AnalysisConfigError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    failure = analysis_settings(config, app).clusters
    request = ClusterRequest(start, end, app, route, chosen, min_lift, alpha)
    root = str(settings.data_dir)
    key = (request, failure)
    return get_cache(root, settings.clusters_cache_s).get(key, lambda: find_clusters(db, root, request, failure))


@router.get("/clusters/{cluster_id}", responses=NOT_FOUND)
def get_cluster(
    db: DuckDB,
    cluster_id: Annotated[str, Path(max_length=64, pattern=r"^c-\d+$")],
    limit: Annotated[int, Query(ge=1, le=10_000, description="Members per page, nearest the centre first")] = 100,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1, description="Members to skip (at most DuckDB's BIGINT)")] = 0,
    failed_only: Annotated[bool, Query(description="Only the members that failed")] = False,
) -> dict[str, Any]:
    columns, rows = query(
        db,
        """SELECT run_id, run_at, app, route, since, until, signals, embedding, rank, label, size, failures,
                  failure_rate, baseline_failure_rate, lift, detail, created_at
           FROM clusters WHERE cluster_id = $id""",
        {"id": cluster_id},
    )
    if not rows:
        raise HTTPException(status_code=404, detail=f"no stored cluster {cluster_id!r}")
    cluster: dict[str, Any] = dict(zip(columns, rows[0], strict=True))
    detail = json.loads(cluster.pop("detail"))
    window = {"since": cluster["since"], "until": cluster["until"]}
    for name in ("run_at", "since", "until", "created_at"):
        cluster[name] = utc_text(cluster[name])
    cluster["signals"] = {"chosen": cluster["signals"].split(","), "counts": detail.pop("signals")}
    member_columns, member_rows = query(
        db,
        f"""SELECT m.generation_id, m.failed, m.similarity, e.ts, e.model, e.prompt_version, e.input, e.output
            FROM cluster_member_runs m
            LEFT JOIN (SELECT * FROM events WHERE type = 'generation' AND ts >= $since AND ts < $until) e
                   USING (generation_id)
            WHERE m.run_id = $run AND m.cluster_id = $id {"AND m.failed" if failed_only else ""}
            ORDER BY m.similarity DESC, m.generation_id
            LIMIT $limit OFFSET $offset""",
        {"run": cluster["run_id"], "id": cluster_id, **window, "limit": limit, "offset": offset},
    )  # fmt: skip
    members: list[dict[str, Any]] = [dict(zip(member_columns, r, strict=True)) for r in member_rows]
    for m in members:
        m["similarity"] = round(float(m["similarity"]), 4)
        if m["ts"] is not None:
            m["ts"] = utc_text(m["ts"])
    return {"cluster_id": cluster_id, **cluster, **detail, "members": members, "members_count": len(members),
            "limit": limit, "offset": offset}  # fmt: skip
