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
) -> list[dict[str, Any]]:
    """Per time bucket (and group): count, mean, p50 and p95 of one metric's values.

    Buckets are ``time_bucket(window, ts)`` (aligned to midnight UTC for windows that divide a day);
    ``since`` is inclusive, ``until`` exclusive; both are naive UTC.
    """
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
        GROUP BY ALL
        ORDER BY bucket, "group" NULLS FIRST
        {"LIMIT " + str(int(limit)) if limit else ""}
    """
    params = {"window": window_s, "metric": metric, "since": since, "until": until}
    columns, rows = query(con, sql, params)
    return [dict(zip(columns, row, strict=True)) for row in rows]
