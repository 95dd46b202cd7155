"""``/v1/drift``: did a signal change between a reference window and a current one?

Request and response::

    GET /v1/drift?signal=output_embedding&app=chat&reference_since=2026-11-20T00:00:00Z
        &reference_until=2026-11-27T00:00:00Z&current_since=2026-11-27T00:00:00Z&current_until=2026-11-28T00:00:00Z
    -> {"data": [{"bucket": "2026-11-27T00:00:00Z", "group": null, "signal": "output_embedding",
                  "method": "mmd2_rbf", "statistic": 0.035, "threshold": 0.001, "p_value": 0.005, "drifted": true,
                  "n_reference": 2000, "n_current": 812, "sampled": true, "insufficient_data": false,
                  "details": {"bandwidth": 1.4, "centroid_distance": 0.34, "permutations": 200}}], "count": 1}

Signals: ``output_embedding`` / ``input_embedding`` (MMD², :func:`metrics.drift.embedding_drift`), a score metric
(PSI with a KS test, :func:`metrics.drift.numeric_drift`), or ``route`` / ``model`` / ``prompt_version`` (χ² and
Jensen-Shannon, :func:`metrics.drift.categorical_drift`). ``window`` cuts the current range into buckets, each
compared with the whole reference; ``group_by`` compares each group with the same group's reference.

Example (a request refused before anything is read)::

    >>> import tempfile
    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> from api.settings import ApiSettings, get_settings
    >>> app = FastAPI()
    >>> app.include_router(router)
    >>> app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tempfile.mkdtemp())
    >>> TestClient(app).get("/v1/drift", params={"signal": "model", "reference_since": "2026-11-02T00:00:00Z",
    ...     "reference_until": "2026-11-01T00:00:00Z", "current_since": "2026-11-02T00:00:00Z",
    ...     "current_until": "2026-11-03T00:00:00Z"}).json()
    {'detail': '`reference_since` must be before `reference_until`'}
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, field_serializer

from api.deps import DuckDB, EvalConfig, RequestTime
from api.queries import (
    CATEGORICAL_SIGNALS,
    EMBEDDING_SIGNALS,
    GENERATION_RATES,
    drift_groups,
    drift_sample,
    unknown_metrics,
)
from api.routers.metrics import MAX_POINTS, naive_utc, parse_window, utc_text
from metrics.analysis import DriftSettings, analysis_settings
from metrics.drift import DEFAULT_MIN_N, Drift, categorical_drift, embedding_drift, numeric_drift

router = APIRouter(prefix="/v1", tags=["drift"])

DEFAULT_SAMPLE_CAP = 2000  # per side: 2,000 + 2,000 embeddings take ~1 s of MMD² with 200 permutations on 2 cores


class DriftPoint(BaseModel):
    bucket: datetime
    group: str | None
    signal: str
    method: str
    statistic: float | None
    threshold: float
    p_value: float | None
    drifted: bool
    n_reference: int
    n_current: int
    sampled: bool
    insufficient_data: bool
    details: dict[str, Any]

    @field_serializer("bucket")
    def _utc(self, value: datetime) -> str:
        return utc_text(value)


class DriftResponse(BaseModel):
    data: list[DriftPoint]
    count: int


def _window(since: datetime | None, until: datetime | None, name: str) -> tuple[datetime, datetime]:
    s, u = naive_utc(since), naive_utc(until)
    if s is None or u is None:
        raise HTTPException(status_code=422, detail=f"`{name}_since` and `{name}_until` are both required")
    if s >= u:
        raise HTTPException(status_code=422, detail=f"`{name}_since` must be before `{name}_until`")
    return s, u


def _buckets(start: datetime, end: datetime, window: str | None) -> list[tuple[datetime, datetime]]:
    if window is None:
        return [(start, end)]
    try:
        width = timedelta(seconds=parse_window(window))
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    if (end - start) / width > MAX_POINTS:
        raise HTTPException(status_code=422, detail=f"more than {MAX_POINTS} buckets: use a wider window")
    out = []
    while start < end:
        out.append((start, min(start + width, end)))
        start += width
    return out


def _test(signal: str, reference: Any, current: Any, drift: DriftSettings, min_n: int) -> Drift:
    if signal in EMBEDDING_SIGNALS:
        return embedding_drift(reference, current, drift.alpha, drift.mmd2_threshold, min_n)
    if signal in CATEGORICAL_SIGNALS:
        return categorical_drift(reference, current, drift.alpha, drift.js_threshold, min_n)
    return numeric_drift(reference, current, drift.alpha, drift.psi_threshold, min_n)


@router.get("/drift", response_model=DriftResponse)
def get_drift(
    db: DuckDB,
    config: EvalConfig,
    signal: Annotated[
        str,
        Query(
            min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$",
            description="output_embedding, input_embedding, a score metric, or route / model / prompt_version / "
            "index_version",
        ),
    ],
    reference_since: Annotated[RequestTime | None, Query(description="Reference window start (RFC 3339)")] = None,
    reference_until: Annotated[RequestTime | None, Query(description="Reference window end, exclusive")] = None,
    current_since: Annotated[RequestTime | None, Query(description="Current window start (RFC 3339)")] = None,
    current_until: Annotated[RequestTime | None, Query(description="Current window end, exclusive")] = None,
    window: Annotated[str | None, Query(description="Cut the current window into buckets: 30s, 5m, 1h, 1d, 1w")] = None,
    group_by: Annotated[Literal["app", "route", "model", "prompt_version", "index_version"] | None, Query()] = None,
    app: Annotated[str | None, Query(max_length=256)] = None,
    route: Annotated[str | None, Query(max_length=256)] = None,
    model: Annotated[str | None, Query(max_length=256)] = None,
    prompt_version: Annotated[str | None, Query(max_length=256)] = None,
    index_version: Annotated[str | None, Query(max_length=256)] = None,
    component: Annotated[str | None, Query(max_length=512, description="Score signals: only this component's")] = None,
    alpha: Annotated[
        float | None, Query(gt=0, lt=0.5, description="Significance level; default the config's (0.01)")
    ] = None,
    min_n: Annotated[int, Query(ge=2, le=1_000_000, description="Fewer per side: insufficient_data")] = DEFAULT_MIN_N,
    max_samples: Annotated[
        int, Query(ge=10, le=20_000, description="At most this many per side, sampled by a hash of the id")
    ] = DEFAULT_SAMPLE_CAP,
) -> DriftResponse:  # fmt: skip
    ref_since, ref_until = _window(reference_since, reference_until, "reference")
    cur_since, cur_until = _window(current_since, current_until, "current")
    buckets = _buckets(cur_since, cur_until, window)
    embedding, categorical = signal in EMBEDDING_SIGNALS, signal in CATEGORICAL_SIGNALS
    if not embedding and not categorical and (signal in GENERATION_RATES or unknown_metrics(db, [signal])):
        raise HTTPException(
            status_code=422,
            detail=f"unknown signal {signal!r}: output_embedding, input_embedding, route, model, prompt_version, "
            "index_version or a scored metric",
        )
    if group_by is not None and signal == group_by:
        raise HTTPException(status_code=422, detail=f"group_by must differ from the signal ({signal})")
    filters = {"app": app, "route": route, "model": model, "prompt_version": prompt_version,
               "index_version": index_version, "component": component}  # fmt: skip
    reference_params = {**filters, "since": ref_since, "until": ref_until}
    groups: list[Any] = [None]
    if group_by is not None:
        groups = drift_groups(db, signal, group_by, {**filters, "since": cur_since, "until": cur_until})
    points = []
    for group in groups:
        extra = {"group": group} if group_by is not None else {}
        reference, n_ref = drift_sample(db, signal, {**reference_params, **extra}, group_by, max_samples)
        drift = analysis_settings(config, str(group) if group_by == "app" and group is not None else app).drift
        if alpha is not None:
            drift = replace(drift, alpha=alpha)
        for start, end in buckets:
            params = {**filters, "since": start, "until": end, **extra}
            current, n_cur = drift_sample(db, signal, params, group_by, max_samples)
            result = _test(signal, reference, current, drift, min_n)
            sampled = n_ref > max_samples or n_cur > max_samples
            fields = asdict(result) | {"n_reference": n_ref, "n_current": n_cur}
            if sampled:
                fields["details"] = {**fields["details"], "tested_reference": result.n_reference,
                                     "tested_current": result.n_current}  # fmt: skip
            points.append(
                DriftPoint(
                    bucket=start, group=None if group is None else str(group), signal=signal, sampled=sampled,
                    **fields,
                )
            )  # fmt: skip
    return DriftResponse(data=points, count=len(points))
