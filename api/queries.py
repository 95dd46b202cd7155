"""SQL the API runs against the DuckDB views of :mod:`sinks.catalog` (no live worker state).

Example::

    >>> import tempfile
    >>> from sinks.catalog import connect
    >>> timeseries(connect(tempfile.mkdtemp()), "edit_ratio", window_s=3600)
    []
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np

from metrics.analysis import FailureSettings
from metrics.similarity import EMBEDDING_DIM
from sinks.catalog import query, query_arrow

GROUP_COLUMNS = ("app", "route", "model", "prompt_version", "index_version")
# the labels of a score row: the generation's, and the component of a span score
SCORE_COLUMNS = (*GROUP_COLUMNS, "component")
# rows from ``$since`` (inclusive) to ``$until`` (exclusive), either of them NULL for no bound
_OPTIONAL_TIME = "($since IS NULL OR ts >= $since) AND ($until IS NULL OR ts < $until)"


# Each generation's outcomes from its score rows (inside a GROUP BY generation_id): its latest thumbs and edit
# ratio, and whether it was ever regenerated, refreshed or flagged, and its quality: what the failure signals read
# (the generations view of sinks.catalog defines them the same way)
OUTCOME_METRICS = ("thumbs_up", "regenerated", "refreshed", "edit_ratio", "guardrail_flag", "pii_output", "quality")
OUTCOMES = """arg_max(value, ts) FILTER (WHERE metric = 'thumbs_up') AS thumbs_up,
           max(value) FILTER (WHERE metric = 'regenerated') AS regenerated,
           max(value) FILTER (WHERE metric = 'refreshed') AS refreshed,
           arg_max(value, ts) FILTER (WHERE metric = 'edit_ratio') AS edit_ratio,
           max(value) FILTER (WHERE metric = 'guardrail_flag') AS guardrail_flag,
           max(value) FILTER (WHERE metric = 'pii_output') AS pii_output,
           max(value) FILTER (WHERE metric = 'quality') AS quality"""


# What makes a generation a failure, per signal (metrics.analysis.FailureSettings), over the OUTCOMES columns and
# `error` (1 when the generation failed); the two thresholds are parameters of the query
SIGNAL_SQL = {
    "thumbs_down": "thumbs_up = 0",
    "regenerated": "regenerated >= 1",
    "refreshed": "refreshed >= 1",
    "edited": "edit_ratio >= $edit_ratio_threshold",
    "guardrail": "guardrail_flag >= 1",
    "pii": "pii_output >= 1",
    "error": "error >= 1",
    "low_quality": "quality < $quality_threshold",
}


def signal_columns(signals: tuple[str, ...]) -> str:
    """One boolean column per signal, ``signal_<name>`` (false where the outcome is missing)."""
    return ", ".join(f'coalesce({SIGNAL_SQL[s]}, false) AS "signal_{s}"' for s in signals)


def signal_params(sql: str, settings: FailureSettings) -> dict[str, float]:
    """The thresholds ``sql`` uses (DuckDB refuses parameters a statement does not have)."""
    values = {"edit_ratio_threshold": settings.edit_ratio_threshold, "quality_threshold": settings.quality_threshold}
    return {k: v for k, v in values.items() if f"${k}" in sql}


def naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value  # naive means UTC
    return value.astimezone(UTC).replace(tzinfo=None)


def utc_text(value: datetime) -> str:
    """A naive-UTC timestamp as RFC 3339 with ``Z`` (the API's one format for times it returns)."""
    return value.replace(tzinfo=None).isoformat() + "Z"


def _labels_equal(*columns: str) -> str:
    """Rows whose ``columns`` equal the parameters of the same names (a NULL parameter: any value). ``component``
    only narrows span scores: a score without a component (every other metric) is kept."""
    return " AND ".join(
        "($component IS NULL OR component IS NULL OR component = $component)"
        if c == "component"
        else f"(${c} IS NULL OR {c} = ${c})"
        for c in columns
    )


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
    ``route``, ``model``, ``prompt_version``, ``index_version`` or ``component`` equal the value given (None: any).
    """
    filters = {column: (filters or {}).get(column) for column in SCORE_COLUMNS}
    if group_by is not None and group_by not in SCORE_COLUMNS:
        raise ValueError(f"group_by must be one of {', '.join(SCORE_COLUMNS)}")
    group = group_by or "NULL::VARCHAR"
    sql = f"""
        SELECT time_bucket(to_seconds($window), ts) AS bucket,
               {group} AS "group",
               count(*) AS count,
               avg(value) AS mean,
               quantile_cont(value, 0.5) AS p50,
               quantile_cont(value, 0.95) AS p95
        FROM scores
        WHERE metric = $metric AND {_OPTIONAL_TIME} AND {_labels_equal(*SCORE_COLUMNS)}
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


def _cohort_filter(dimension: str, scores: bool = True) -> str:
    """A cohort's rows: of the scores (``component`` filters them too), or of the ``generations`` view."""
    if dimension not in GROUP_COLUMNS:
        raise ValueError(f"dimension must be one of {', '.join(GROUP_COLUMNS)}")
    labels = _labels_equal("app", "route", "component") if scores else _labels_equal("app", "route")
    return f"{dimension} = $value AND {labels} AND {_OPTIONAL_TIME}"


def cohort_rate(
    con: duckdb.DuckDBPyConnection, metric: str, dimension: str, value: str, filters: dict[str, Any]
) -> tuple[int, int]:
    """(successes, observations) of ``regenerated`` or ``refreshed`` in one cohort: over its generations (a
    generation without the score counts as 0)."""
    if metric not in GENERATION_RATES:
        raise ValueError(f"{metric} is not a rate over generations")
    sql = f"SELECT coalesce(sum({metric}), 0), count(*) FROM generations WHERE {_cohort_filter(dimension, False)}"
    params = {k: v for k, v in filters.items() if k != "component"}
    (k, n), *_ = query(con, sql, {**params, "value": value})[1]
    return int(k), int(n)  # type: ignore[call-overload]


def cohort_aggregates(
    con: duckdb.DuckDBPyConnection, metrics: list[str], dimension: str, sides: tuple[str, str], filters: dict[str, Any]
) -> dict[tuple[str, str], tuple[int, float, float | None, float | None, float | None]]:
    """Per (metric, cohort): count, sum, mean, sample variance and p95 of the scores, in one scan."""
    if dimension not in GROUP_COLUMNS:
        raise ValueError(f"dimension must be one of {', '.join(GROUP_COLUMNS)}")
    sql = f"""
        SELECT metric, {dimension}, count(*), sum(value), avg(value), var_samp(value), quantile_cont(value, 0.95)
        FROM scores
        WHERE list_contains($metrics, metric) AND {dimension} IN ($a, $b)
          AND {_labels_equal("app", "route", "component")} AND {_OPTIONAL_TIME}
        GROUP BY ALL"""
    rows = query(con, sql, {**filters, "metrics": metrics, "a": sides[0], "b": sides[1]})[1]
    return {(str(r[0]), str(r[1])): (int(r[2]), float(r[3]), r[4], r[5], r[6]) for r in rows}  # type: ignore[call-overload,arg-type,misc]


def cohort_order_statistics(
    con: duckdb.DuckDBPyConnection, metric: str, dimension: str, value: str, filters: dict[str, Any],
    n: int, ranks: tuple[int, int],
) -> tuple[float, float]:  # fmt: skip
    """The values at two 1-based ranks of one cohort's sorted scores (``quantile_disc`` at each rank's middle)."""
    sql = f"""SELECT quantile_disc(value, $q1), quantile_disc(value, $q2) FROM scores
              WHERE metric = $metric AND {_cohort_filter(dimension)}"""
    params = {**filters, "value": value, "metric": metric, "q1": (ranks[0] - 0.5) / n, "q2": (ranks[1] - 0.5) / n}
    (low, high), *_ = query(con, sql, params)[1]
    return float(low), float(high)  # type: ignore[arg-type]


def cohort_sample(
    con: duckdb.DuckDBPyConnection, metric: str, dimension: str, value: str, filters: dict[str, Any],
    n: int, cap: int,
) -> np.ndarray:  # fmt: skip
    """One cohort's ``n`` values, or about ``cap`` of them when there are more: those whose score event id hashes
    to 0 modulo ``ceil(1.2 n / cap)`` (a filter in the scan, no sort; the same rows every time)."""
    modulus = 1 if n <= cap else -(-12 * n // (10 * cap))
    sql = f"""SELECT value FROM scores WHERE metric = $metric AND {_cohort_filter(dimension)}
              AND hash(event_id) % {int(modulus)} = 0"""
    result = con.sql(sql, params={**filters, "value": value, "metric": metric}).fetchnumpy()
    return np.asarray(result["value"], float)


def unknown_metrics(con: duckdb.DuckDBPyConnection, names: list[str]) -> list[str]:
    """The ``names`` never scored (the generation rates are always defined). One short query per name, which
    stops at the first row that has it: callers ask only about names their own query found no rows for."""
    sql = "SELECT 1 FROM scores WHERE metric = $metric LIMIT 1"
    return [m for m in names if m not in GENERATION_RATES and not query(con, sql, {"metric": m})[1]]


EMBEDDING_SIGNALS = ("output_embedding", "input_embedding")
CATEGORICAL_SIGNALS = ("route", "model", "prompt_version", "index_version")


def _window_filter(group_by: str | None, scores: bool = False) -> str:
    group = f"AND {group_by} IS NOT DISTINCT FROM $group" if group_by else ""
    labels = _labels_equal(*(SCORE_COLUMNS if scores else GROUP_COLUMNS))
    return f"ts >= $since AND ts < $until AND {labels} {group}"


def drift_sample(
    con: duckdb.DuckDBPyConnection,
    signal: str,
    params: dict[str, Any],
    group_by: str | None,
    cap: int,
) -> tuple[Any, int]:
    """The signal's values in one window (``params``: since, until, the filters, and group when grouped), at most
    ``cap`` of them, chosen by a hash of the generation (or event) id, so the same data gives the same sample;
    and how many there were in all.

    Embeddings come back as a float32 array (one unit row per generation), scores as float values, categorical
    labels as strings.
    """
    source = _drift_source(signal)
    where = _window_filter(group_by, source == "scores")
    params = _drift_params(params, source, signal)
    if signal in EMBEDDING_SIGNALS:
        column, key = f"{signal}", "generation_id"
        where += f" AND {signal} IS NOT NULL"
    elif signal in CATEGORICAL_SIGNALS:
        column, key = signal, "generation_id"
    else:
        column, key = "value", "event_id"
        where += " AND metric = $metric"
    total_sql = f"SELECT count(*) FROM {source} WHERE {where}"
    total = int(query(con, total_sql, params)[1][0][0])  # type: ignore[call-overload]
    sql = f"SELECT {column} FROM {source} WHERE {where} ORDER BY hash({key}), {key} LIMIT {int(cap)}"
    if signal in EMBEDDING_SIGNALS:
        table = query_arrow(con, sql, params)
        values = table.column(0).combine_chunks().values.to_numpy(zero_copy_only=False)
        vectors = values.reshape(table.num_rows, EMBEDDING_DIM).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12), total  # int8 directions back to unit vectors
    return [row[0] for row in query(con, sql, params)[1]], total


def drift_groups(con: duckdb.DuckDBPyConnection, signal: str, group_by: str, params: dict[str, Any]) -> list[Any]:
    """The values of ``group_by`` seen in a window (for a grouped drift series)."""
    source = _drift_source(signal)
    extra = "" if source != "scores" else " AND metric = $metric"
    where = _window_filter(None, source == "scores")
    sql = f"SELECT DISTINCT {group_by} FROM {source} WHERE {where}{extra} ORDER BY 1 NULLS FIRST"
    return [row[0] for row in query(con, sql, _drift_params(params, source, signal))[1]]


def _drift_source(signal: str) -> str:
    return "embeddings" if signal in EMBEDDING_SIGNALS else "generations" if signal in CATEGORICAL_SIGNALS else "scores"


def _drift_params(params: dict[str, Any], source: str, signal: str) -> dict[str, Any]:
    """The query parameters for ``source``: the metric for scores; only scores have a ``component``."""
    if source == "scores":
        return {**params, "metric": signal}
    return {k: v for k, v in params.items() if k != "component"}
