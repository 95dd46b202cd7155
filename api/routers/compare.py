"""``/v1/compare``: two cohorts (two models, prompt versions, routes or apps) side by side, with significance.

Request and response::

    GET /v1/compare?dimension=model&a=model-x&b=model-y&metrics=thumbs_up,latency_ms
    -> {"dimension": "model", "a": "model-x", "b": "model-y", "primary": "thumbs_up", "alpha": 0.05,
        "data": [{"metric": "thumbs_up", "kind": "rate",
                  "a": {"n": 805, "value": 0.26, "ci_low": 0.23, "ci_high": 0.30},
                  "b": {"n": 805, "value": 0.66, "ci_low": 0.63, "ci_high": 0.69},
                  "difference": 0.40, "difference_ci_low": 0.35, "difference_ci_high": 0.44,
                  "p_value": 1.2e-58, "test": "two-proportion z", "significant": true, "warning": null}, ...],
        "count": 2}

Rates (``thumbs_up`` over feedback that carries thumbs; ``regenerated`` and ``refreshed`` over the cohort's
generations; other 0/1 scores over the rows that carry them) and means (every other metric; ``latency_ms`` and
``cost_usd`` also get p95 with an interval): the statistics are :mod:`metrics.stats`. ``difference`` is b - a.
Counts, sums, means, variances and quantiles come from DuckDB in one scan of the scores; only the Mann-Whitney
p-value needs the values themselves (all of them up to 50,000 per side; beyond, about 40,000 chosen by a hash of
the score's id, so the same data gives the same answer).

Example (a request refused before anything is read)::

    >>> import tempfile
    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> from api.settings import ApiSettings, get_settings
    >>> app = FastAPI()
    >>> app.include_router(router)
    >>> app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tempfile.mkdtemp())
    >>> TestClient(app).get("/v1/compare", params={"dimension": "model", "a": "m", "b": "m"}).json()
    {'detail': 'a and b must differ (both are m)'}
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from api.deps import DuckDB, EvalConfig, RequestTime
from api.queries import (
    GENERATION_RATES,
    cohort_aggregates,
    cohort_order_statistics,
    cohort_rate,
    cohort_sample,
    is_rate,
    unknown_metrics,
)
from api.routers.metrics import naive_utc
from metrics.analysis import analysis_settings
from metrics.stats import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_N,
    Comparison,
    Summary,
    compare_rates,
    compare_summaries,
    mann_whitney_p,
    quantile_ranks,
)

router = APIRouter(prefix="/v1", tags=["compare"])

DEFAULT_METRICS = ("thumbs_up", "regenerated", "refreshed", "edit_ratio", "quality", "latency_ms", "cost_usd")
WITH_P95 = frozenset({"latency_ms", "cost_usd"})
MAX_METRICS = 50
# Mann-Whitney on every value up to this many per side; beyond, on a hash sample of about this many
MANN_WHITNEY_CAP = 50_000


class SideOut(BaseModel):
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    p95: float | None = None
    p95_ci_low: float | None = None
    p95_ci_high: float | None = None


class ComparisonOut(BaseModel):
    metric: str
    kind: Literal["rate", "mean"]
    a: SideOut
    b: SideOut
    difference: float | None
    difference_ci_low: float | None
    difference_ci_high: float | None
    p_value: float | None
    p_value_mann_whitney: float | None = None
    test: str
    significant: bool
    warning: str | None


class CompareResponse(BaseModel):
    dimension: str
    a: str
    b: str
    primary: str
    alpha: float
    data: list[ComparisonOut]
    count: int


def _compare_means(
    db: Any, metric: str, dimension: str, sides: tuple[str, str], filters: dict[str, Any],
    aggregates: dict[tuple[str, str], Any], alpha: float, min_n: int,
) -> Comparison:  # fmt: skip
    summaries: list[Summary] = []
    samples: list[Any] = []
    for value in sides:
        n, _, mean, var, p95 = aggregates.get((metric, value), (0, 0.0, None, None, None))
        interval: tuple[float | None, float | None] = (None, None)
        if metric in WITH_P95 and n:
            ranks = quantile_ranks(n, 0.95, 1 - alpha)
            interval = cohort_order_statistics(db, metric, dimension, value, filters, n, ranks)
        summaries.append(Summary(n, mean, var, *((p95, *interval) if metric in WITH_P95 and n else ())))
        samples.append(cohort_sample(db, metric, dimension, value, filters, n, MANN_WHITNEY_CAP) if n >= 2 else [])
    mann_whitney = mann_whitney_p(*samples) if all(len(x) >= 2 for x in samples) else None
    return compare_summaries(summaries[0], summaries[1], alpha, min_n, mann_whitney)


def _metric_list(text: str | None, primary: str | None, supporting: tuple[str, ...]) -> list[str]:
    """The metrics asked for (the configured primary moved first when among them), or by default the configured
    primary and supporting ones, then :data:`DEFAULT_METRICS`."""
    if text is None:
        return list(dict.fromkeys(m for m in (primary, *supporting, *DEFAULT_METRICS) if m))
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise ValueError("metrics: name at least one metric")
    if len(names) > MAX_METRICS:
        raise ValueError(f"metrics: at most {MAX_METRICS} at once")
    names = list(dict.fromkeys(names))  # in order, without repeats
    return [primary, *(m for m in names if m != primary)] if primary in names else names


@router.get("/compare", response_model=CompareResponse, response_model_exclude_none=False)
def get_compare(
    db: DuckDB,
    config: EvalConfig,
    dimension: Annotated[
        Literal["model", "prompt_version", "index_version", "route", "app"],
        Query(description="What the cohorts differ in"),
    ],
    a: Annotated[str, Query(min_length=1, max_length=256, description="Cohort a: this value of the dimension")],
    b: Annotated[str, Query(min_length=1, max_length=256, description="Cohort b (difference = b - a)")],
    metrics: Annotated[
        str | None,
        Query(
            max_length=4096,
            pattern=r"^[A-Za-z0-9_.:\-, ]+$",
            description="Comma-separated; default: " + ", ".join(DEFAULT_METRICS) + " (the first is the primary)",
        ),
    ] = None,
    app: Annotated[str | None, Query(max_length=256, description="Only this app")] = None,
    route: Annotated[str | None, Query(max_length=256, description="Only this route")] = None,
    component: Annotated[
        str | None, Query(max_length=512, description="Only span scores of this component (e.g. span_duration_ms)")
    ] = None,
    since: Annotated[RequestTime | None, Query(description="Inclusive start, RFC 3339 (naive = UTC)")] = None,
    until: Annotated[RequestTime | None, Query(description="Exclusive end, RFC 3339 (naive = UTC)")] = None,
    alpha: Annotated[float, Query(gt=0, lt=0.5, description="Significance level")] = DEFAULT_ALPHA,
    min_n: Annotated[
        int, Query(ge=2, le=1_000_000, description="Fewer observations on a side: a warning")
    ] = DEFAULT_MIN_N,
) -> CompareResponse:
    if a == b:
        raise HTTPException(status_code=422, detail=f"a and b must differ (both are {a})")
    since_utc, until_utc = naive_utc(since), naive_utc(until)
    if since_utc and until_utc and since_utc >= until_utc:
        raise HTTPException(status_code=422, detail="`since` must be before `until`")
    try:
        configured = analysis_settings(config, app)
        names = _metric_list(metrics, configured.primary, configured.supporting)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    filters: dict[str, Any] = {"app": app, "route": route, "component": component, "since": since_utc,
                               "until": until_utc}  # fmt: skip
    scored = [m for m in names if m not in GENERATION_RATES]
    aggregates = cohort_aggregates(db, scored, dimension, (a, b), filters) if scored else {}
    if metrics is not None:  # a metric asked for by name must exist; only those without rows here are looked up
        absent = [m for m in scored if (m, a) not in aggregates and (m, b) not in aggregates]
        unknown = unknown_metrics(db, absent) if absent else []
        if unknown:
            raise HTTPException(status_code=422, detail=f"unknown metric(s), never scored: {', '.join(unknown)}")
    rows = []
    for metric in names:
        if metric in GENERATION_RATES:
            (k_a, n_a), (k_b, n_b) = (cohort_rate(db, metric, dimension, v, filters) for v in (a, b))
            result = compare_rates(k_a, n_a, k_b, n_b, alpha, min_n)
        elif is_rate(metric):
            (count_a, sum_a), (count_b, sum_b) = (aggregates.get((metric, v), (0, 0.0))[:2] for v in (a, b))
            result = compare_rates(round(sum_a), count_a, round(sum_b), count_b, alpha, min_n)
        else:
            result = _compare_means(db, metric, dimension, (a, b), filters, aggregates, alpha, min_n)
        rows.append(ComparisonOut(metric=metric, **asdict(result)))
    return CompareResponse(dimension=dimension, a=a, b=b, primary=names[0], alpha=alpha, data=rows, count=len(rows))
