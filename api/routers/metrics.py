"""``/v1/metrics``: windowed aggregates of the scores.

Request and response::

    GET /v1/metrics/timeseries?metric=edit_ratio&window=1h&group_by=model&since=2026-11-25T00:00:00Z
    -> {"data": [{"bucket": "2026-11-25T10:00:00Z", "group": "model-a", "count": 12,
                  "mean": 0.21, "p50": 0.18, "p95": 0.52}, ...], "count": 7}

Example (the bucket width, and a request the API refuses before it reads anything)::

    >>> parse_window("5m"), parse_window("1d")
    (300, 86400)
    >>> import tempfile
    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> from api.settings import ApiSettings, get_settings
    >>> app = FastAPI()
    >>> app.include_router(router)
    >>> app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tempfile.mkdtemp())
    >>> client = TestClient(app)
    >>> client.get("/v1/metrics/timeseries", params={"metric": "edit_ratio", "window": "5x"}).json()
    {'detail': "window must look like 30s, 5m, 1h, 1d or 1w (got '5x')"}
    >>> client.get("/v1/metrics/timeseries", params={"metric": "edit_ratio"}).json()
    {'data': [], 'count': 0}
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, field_serializer

from api.deps import DuckDB, RequestTime
from api.queries import naive_utc, timeseries, utc_text

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])

MAX_POINTS = 10_000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TOO_MANY = f"more than {MAX_POINTS} points: use a wider window or a narrower since/until"
_WINDOW = re.compile(r"^(\d{1,7})([smhdw])$")


def parse_window(text: str) -> int:
    """``'90s'``, ``'5m'``, ``'1h'``, ``'1d'``, ``'1w'`` -> seconds (at least 1 s, at most 366 days)."""
    match = _WINDOW.match(text.strip())
    if not match:
        raise ValueError(f"window must look like 30s, 5m, 1h, 1d or 1w (got {text!r})")
    seconds = int(match[1]) * _UNITS[match[2]]
    if not 1 <= seconds <= 366 * 86400:
        raise ValueError(f"window must be between 1s and 366d (got {text!r})")
    return seconds


def window(
    since: datetime | None, until: datetime | None, default: timedelta, to_minute: bool = False
) -> tuple[datetime, datetime]:
    """A request's window as naive UTC: ``until`` defaults to now (``to_minute``: rounded down to the minute, so
    that repeated calls share a cache), ``since`` to ``default`` before it; 422 unless since < until."""
    now = datetime.now(UTC).replace(tzinfo=None)
    end = naive_utc(until) or (now.replace(second=0, microsecond=0) if to_minute else now)
    start = naive_utc(since) or end - default
    if start >= end:
        raise HTTPException(status_code=422, detail="`since` must be before `until`")
    return start, end


class TimeseriesPoint(BaseModel):
    bucket: datetime
    group: str | None
    count: int
    mean: float
    p50: float
    p95: float

    @field_serializer("bucket")
    def _utc(self, value: datetime) -> str:
        return utc_text(value)


class TimeseriesResponse(BaseModel):
    data: list[TimeseriesPoint]
    count: int


@router.get("/timeseries", response_model=TimeseriesResponse)
def get_timeseries(
    db: DuckDB,
    metric: Annotated[
        str,
        Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$", description="e.g. edit_ratio"),
    ],
    window: Annotated[str, Query(description="Bucket width: 30s, 5m, 1h, 1d, 1w")] = "1h",
    group_by: Annotated[
        Literal["app", "route", "model", "prompt_version", "index_version", "component", "none"] | None,
        Query(description="Split by"),
    ] = None,
    since: Annotated[RequestTime | None, Query(description="Inclusive start, RFC 3339 (naive = UTC)")] = None,
    until: Annotated[RequestTime | None, Query(description="Exclusive end, RFC 3339 (naive = UTC)")] = None,
    app: Annotated[str | None, Query(max_length=256, description="Only this app")] = None,
    route: Annotated[str | None, Query(max_length=256, description="Only this route")] = None,
    model: Annotated[str | None, Query(max_length=256, description="Only this model")] = None,
    prompt_version: Annotated[str | None, Query(max_length=256, description="Only this prompt version")] = None,
    index_version: Annotated[str | None, Query(max_length=256, description="Only this index version")] = None,
    component: Annotated[str | None, Query(max_length=512, description="Only span scores of this component")] = None,
) -> TimeseriesResponse:
    try:
        window_s = parse_window(window)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    since_utc, until_utc = naive_utc(since), naive_utc(until)
    if since_utc and until_utc:
        if since_utc >= until_utc:
            raise HTTPException(status_code=422, detail="`since` must be before `until`")
        if (until_utc - since_utc).total_seconds() / window_s > MAX_POINTS:
            raise HTTPException(status_code=422, detail=_TOO_MANY)
    rows = timeseries(
        db, metric, window_s, None if group_by in (None, "none") else group_by, since_utc, until_utc,
        limit=MAX_POINTS + 1,
        filters={"app": app, "route": route, "model": model, "prompt_version": prompt_version,
                 "index_version": index_version, "component": component},
    )  # fmt: skip
    if len(rows) > MAX_POINTS:
        raise HTTPException(status_code=422, detail=_TOO_MANY)
    points = [TimeseriesPoint(**row) for row in rows]
    return TimeseriesResponse(data=points, count=len(points))
