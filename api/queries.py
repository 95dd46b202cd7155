"""SQL the API runs against the DuckDB views of :mod:`sinks.catalog` (no live worker state).

Example::

    >>> import tempfile
    >>> from sinks.catalog import connect
    >>> timeseries(connect(tempfile.mkdtemp()), "edit_ratio", window_s=3600)
    []
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from sinks.catalog import query

GROUP_COLUMNS = ("app", "route", "model", "prompt_version")


def timeseries(
    con: duckdb.DuckDBPyConnection,
    metric: str,
    window_s: int,
    group_by: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    filters: dict[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """Per time bucket (and group): count, mean, p50 and p95 of one metric's values.

    Buckets are ``time_bucket(window, ts)`` (aligned to midnight UTC for windows that divide a day);
    ``since`` is inclusive, ``until`` exclusive; both are naive UTC. ``filters``: only rows whose ``app``,
    ``route``, ``model`` or ``prompt_version`` equal the value given (None: any).
    """
    filters = {column: (filters or {}).get(column) for column in GROUP_COLUMNS}
    if group_by is not None and group_by not in GROUP_COLUMNS:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_COLUMNS)}")
    group = group_by or "NULL::VARCHAR"
    sql = f"""
        SELECT time_bucket(to_seconds($window), ts) AS bucket,
               {group} AS "group",
               count(*) AS count,
               avg(value) AS mean,
               quantile_cont(value, 0.5) AS p50,
               quantile_cont(value, 0.95) AS p95
        FROM scores
        WHERE metric = $metric
          AND ($since IS NULL OR ts >= $since)
          AND ($until IS NULL OR ts < $until)
          AND ($app IS NULL OR app = $app) AND ($route IS NULL OR route = $route)
          AND ($model IS NULL OR model = $model) AND ($prompt_version IS NULL OR prompt_version = $prompt_version)
        GROUP BY ALL
        ORDER BY bucket, "group" NULLS FIRST
        {"LIMIT " + str(int(limit)) if limit else ""}
    """
    params = {"window": window_s, "metric": metric, "since": since, "until": until, **filters}
    columns, rows = query(con, sql, params)
    return [dict(zip(columns, row, strict=True)) for row in rows]


# 0/1 scores compared as rates; every other metric is compared by its mean
RATE_METRICS = frozenset({"thumbs_up", "regenerated", "refreshed", "error", "guardrail_flag", "edit_accepted"})
# rates over a cohort's generations (the scores only hold the 1s): the denominator is every generation
GENERATION_RATES = frozenset({"regenerated", "refreshed"})


def is_rate(metric: str) -> bool:
    return metric in RATE_METRICS or metric.startswith("guardrail_")


def _cohort_filter(dimension: str) -> str:
    if dimension not in GROUP_COLUMNS:
        raise ValueError(f"dimension must be one of {', '.join(GROUP_COLUMNS)}")
    return f"""{dimension} = $value
          AND ($app IS NULL OR app = $app)
          AND ($route IS NULL OR route = $route)
          AND ($since IS NULL OR ts >= $since)
          AND ($until IS NULL OR ts < $until)"""


def cohort_rate(
    con: duckdb.DuckDBPyConnection, metric: str, dimension: str, value: str, filters: dict[str, Any]
) -> tuple[int, int]:
    """(successes, observations) of a 0/1 metric in one cohort: over its generations for ``regenerated`` and
    ``refreshed`` (a generation without the score counts as 0), else over the score rows that carry it."""
    params = {**filters, "value": value}
    if metric in GENERATION_RATES:
        sql = f"SELECT coalesce(sum({metric}), 0), count(*) FROM generations WHERE {_cohort_filter(dimension)}"
    else:
        sql = f"""SELECT coalesce(sum(value), 0), count(*) FROM scores
                  WHERE metric = $metric AND {_cohort_filter(dimension)}"""
        params["metric"] = metric
    (k, n), *_ = query(con, sql, params)[1]
    return int(k), int(n)  # type: ignore[call-overload]


def cohort_values(
    con: duckdb.DuckDBPyConnection, metric: str, dimension: str, value: str, filters: dict[str, Any]
) -> list[float]:
    """Every value of ``metric`` in one cohort."""
    sql = f"SELECT value FROM scores WHERE metric = $metric AND {_cohort_filter(dimension)}"
    rows = query(con, sql, {**filters, "value": value, "metric": metric})[1]
    return [float(r[0]) for r in rows]  # type: ignore[arg-type]


def known_metrics(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The metric names the scores hold, and the generation rates (always defined)."""
    return {str(r[0]) for r in query(con, "SELECT DISTINCT metric FROM scores")[1]} | GENERATION_RATES
