"""``/v1/alerts``: the incidents the alert rules opened, and what explains one.

Request and response::

    GET /v1/alerts?state=firing&app=shop&since=2026-11-30T00:00:00Z
    -> {"data": [{"alert_id": "4f1c…", "state": "firing", "rule": "thumbs-drop", "kind": "threshold",
                  "severity": "critical", "app": "shop", "group": {"app": "shop", "route": "answer"},
                  "metric": "thumbs_up", "aggregation": "rate", "comparator": "<", "threshold": 0.45,
                  "value": 0.2, "samples": 30, "fired_at": "2026-11-30T09:06:00Z", "resolved_at": null,
                  "detected_at": "2026-11-30T09:08:12Z", "window_start": …, "window_end": …, …}],
        "count": 1}
    GET /v1/alerts/4f1c…
    -> the incident, its state changes, the windows that fired it (the ``windows`` rows of its group and metric),
       its webhook deliveries, and links to the queries that explain it (timeseries, drift before/during,
       failure clusters and components of the incident's period).

An incident is listed when it overlaps ``[since, until)``: fired before ``until`` and not resolved before
``since``. Times are event time (the windows'), ``detected_at`` when the pipeline knew (the slowest partition's
watermark when the window completed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Path, Query

from api.deps import DuckDB, RequestTime
from api.queries import utc_text
from api.responses import NOT_FOUND
from api.routers.metrics import window
from sinks.catalog import query

router = APIRouter(prefix="/v1", tags=["alerts"])

_INCIDENTS = """
WITH t AS (SELECT * EXCLUDE (dt) FROM alerts),
f AS (SELECT * FROM t WHERE state = 'firing'),
r AS (SELECT alert_id, any_value(changed_at) AS resolved_at, any_value(value) AS resolved_value FROM t
      WHERE state = 'resolved' GROUP BY alert_id)
SELECT f.alert_id, CASE WHEN r.alert_id IS NULL THEN 'firing' ELSE 'resolved' END AS state, f.rule, f.rule_version,
       f.kind, f.severity, f.description, f.app, map_from_entries(map_entries(f."group")) AS "group", f.metric,
       f.aggregation, f.comparator, f.threshold, f.value, f.samples, f.p_value, f.changed_at AS fired_at,
       r.resolved_at, r.resolved_value, f.detected_at, f.window_start, f.window_end, f.windows
FROM f LEFT JOIN r USING (alert_id)
WHERE ($alert_id IS NULL OR f.alert_id = $alert_id)
  AND ($app IS NULL OR f.app = $app) AND ($rule IS NULL OR f.rule = $rule)
  AND f.changed_at < $until AND (r.resolved_at IS NULL OR r.resolved_at >= $since)
QUALIFY row_number() OVER (PARTITION BY f.alert_id ORDER BY f.detected_at) = 1
ORDER BY f.changed_at DESC, f.alert_id
LIMIT $limit
"""

_TIMES = ("fired_at", "resolved_at", "detected_at", "window_start", "window_end")


def _incident(columns: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(columns, row, strict=True))
    for name in _TIMES:
        out[name] = utc_text(out[name]) if out[name] is not None else None
    out["group"] = {k: (v or None) for k, v in dict(out["group"] or {}).items()}
    out["windows"] = [utc_text(w) for w in out["windows"] or ()]
    return out


def _incidents(db: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    columns, rows = query(db, _INCIDENTS, params)
    return [_incident(columns, row) for row in rows]


@router.get("/alerts")
def get_alerts(
    db: DuckDB,
    state: Annotated[Literal["firing", "resolved", "all"], Query(description="Incidents in this state")] = "all",
    app: Annotated[str | None, Query(max_length=256)] = None,
    rule: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[RequestTime | None, Query(description="Inclusive start, RFC 3339; default until - 7 days")] = None,
    until: Annotated[RequestTime | None, Query(description="Exclusive end, RFC 3339; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    start, end = window(since, until, timedelta(days=7))
    params = {"alert_id": None, "app": app, "rule": rule, "since": start, "until": end, "limit": limit}
    data = [i for i in _incidents(db, params) if state == "all" or i["state"] == state]
    return {"data": data, "count": len(data)}


_WINDOWS = """
SELECT * EXCLUDE (dt, sketch) FROM windows
WHERE list_contains($starts, window_start) AND list_contains($metrics, metric)
ORDER BY window_start, route, model, prompt_version
"""

_DELIVERIES = """
SELECT * EXCLUDE (dt) FROM alert_deliveries WHERE alert_id = $alert_id ORDER BY attempted_at, receiver, attempt
"""


def _links(incident: dict[str, Any]) -> dict[str, str]:
    """Queries that explain an incident: its metric over time, before against during, clusters, components."""
    group = {k: v for k, v in incident["group"].items() if k in ("app", "route", "model", "prompt_version") and v}
    start, end = incident["window_start"], incident["resolved_at"] or incident["window_end"]
    before = datetime.fromisoformat(start.replace("Z", "")) - (
        datetime.fromisoformat(end.replace("Z", "")) - datetime.fromisoformat(start.replace("Z", ""))
    )
    metric = incident["metric"].split(",")[0]
    scope = {k: v for k, v in group.items() if k in ("app", "route")}
    return {
        "timeseries": "/v1/metrics/timeseries?" + urlencode({"metric": metric, "window": "1m", **group,
                                                             "since": utc_text(before), "until": end}),
        "drift": "/v1/drift?" + urlencode({"signal": metric, **group, "reference_since": utc_text(before),
                                           "reference_until": start, "current_since": start, "current_until": end}),
        "clusters": "/v1/clusters?" + urlencode({**scope, "since": start, "until": end}),
        "components": "/v1/components?" + urlencode({**{k: v for k, v in scope.items() if k == "app"},
                                                     "since": start, "until": end}),
    }  # fmt: skip


@router.get("/alerts/{alert_id}", responses=NOT_FOUND)
def get_alert(
    db: DuckDB, alert_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
) -> dict[str, Any]:
    params = {"alert_id": alert_id, "app": None, "rule": None, "since": datetime.min, "until": datetime.max,
              "limit": 1}  # fmt: skip
    found = _incidents(db, params)
    if not found:
        raise HTTPException(status_code=404, detail=f"no alert {alert_id}")
    incident = found[0]
    columns, rows = query(db, _WINDOWS, {"starts": [datetime.fromisoformat(w.replace("Z", ""))
                                                    for w in incident["windows"]],
                                         "metrics": incident["metric"].split(",")})  # fmt: skip
    group = incident["group"]
    windows = [
        {**dict(zip(columns, r, strict=True)), "window_start": utc_text(r[0]), "window_end": utc_text(r[1])}  # type: ignore[arg-type]
        for r in rows
    ]
    windows = [w for w in windows if all(w.get(k) == v for k, v in group.items() if k in w)]
    d_columns, d_rows = query(db, _DELIVERIES, {"alert_id": alert_id})
    deliveries = [{**dict(zip(d_columns, r, strict=True)), "attempted_at": utc_text(r[0])} for r in d_rows]  # type: ignore[arg-type]
    return {**incident, "fired_windows": windows, "deliveries": deliveries, "links": _links(incident)}
