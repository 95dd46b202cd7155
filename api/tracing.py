"""SQL behind ``/v1/traces/{trace_id}`` and ``/v1/components``: a trace's span tree with its generations and what
users did with them, and per component its latency, errors and share in the failures.

Example (an empty data folder)::

    >>> import tempfile
    >>> from sinks.catalog import connect
    >>> con = connect(tempfile.mkdtemp())
    >>> trace(con, "t-1") is None
    True
    >>> tree = span_tree([{"span_id": "a", "parent_span_id": None}, {"span_id": "b", "parent_span_id": "a"},
    ...                   {"span_id": "c", "parent_span_id": "gone"}])
    >>> [(n["span_id"], [c["span_id"] for c in n["children"]], n.get("orphan", False)) for n in tree]
    [('a', ['b'], False), ('c', [], True)]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb

from api.queries import OUTCOMES, SIGNAL_SQL, signal_params, utc_text
from metrics.analysis import FailureSettings
from sinks.catalog import query

FOLLOW_UPS = ("feedback", "edit", "regenerate")


def _utc(value: Any) -> Any:
    return utc_text(value) if isinstance(value, datetime) else value


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    columns, rows = query(con, sql, params)
    return [{c: _utc(v) for c, v in zip(columns, row, strict=True)} for row in rows]


def span_tree(spans: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans nested under their parents (``children``), roots first by start. A span whose parent is not in the
    trace is a root marked ``"orphan": True``; parent links that form a cycle are cut at the span that closes it
    (a root marked ``"cycle": True``). Nothing is dropped."""
    by_id = {s["span_id"]: {**s, "children": []} for s in spans}
    roots = []
    for node in by_id.values():
        parent = node.get("parent_span_id")
        if parent is None:
            roots.append(node)
        elif parent not in by_id:
            node["orphan"] = True
            roots.append(node)
    # follow each span's parents: a walk that comes back to it is a cycle, cut once, at its earliest span
    in_cut_cycle: set[str] = set()
    for span_id, node in sorted(by_id.items(), key=lambda item: (item[1].get("start") or "", item[0])):
        seen, current = [span_id], node.get("parent_span_id")
        while current in by_id and current not in seen:
            seen.append(current)
            current = by_id[current].get("parent_span_id")
        if current == span_id and span_id not in in_cut_cycle:
            in_cut_cycle.update(seen)
            node["cycle"] = True
            roots.append(node)
    for node in by_id.values():
        parent = node.get("parent_span_id")
        if parent in by_id and not node.get("cycle"):
            by_id[parent]["children"].append(node)
    for node in by_id.values():
        node["children"].sort(key=lambda n: (n.get("start") or "", n["span_id"]))
    return sorted(roots, key=lambda n: (n.get("start") or "", n["span_id"]))


def trace(con: duckdb.DuckDBPyConnection, trace_id: str) -> dict[str, Any] | None:
    """The trace's span tree, its generations (labels, outcomes, scores) and their follow-ups; None if unknown."""
    spans = _rows(
        con,
        """SELECT span_id, parent_span_id, component, name, start, "end", status,
                  date_diff('microsecond', start, "end") / 1000.0 AS duration_ms, event_id, ts
           FROM events WHERE type = 'span' AND trace_id = $t ORDER BY start, span_id""",
        {"t": trace_id},
    )
    generations = _rows(
        con,
        "SELECT * EXCLUDE (dt, tags), CAST(tags AS JSON) AS tags FROM generations WHERE trace_id = $t ORDER BY ts",
        {"t": trace_id},
    )
    if not spans and not generations:
        return None
    ids = [g["generation_id"] for g in generations]
    scores = _rows(
        con,
        """SELECT generation_id, metric, value, ts, event_id, component FROM scores
           WHERE list_contains($ids, generation_id) ORDER BY ts, metric""",
        {"ids": ids},
    )
    follow_ups = _rows(
        con,
        """SELECT generation_id, type, event_id, ts, thumbs, score, comment, edited_output FROM events
           WHERE list_contains($ids, generation_id) AND type IN ('feedback', 'edit', 'regenerate') ORDER BY ts""",
        {"ids": ids},
    )
    for g in generations:
        g["scores"] = [{k: v for k, v in s.items() if k != "generation_id"} for s in scores if s["generation_id"] ==
                       g["generation_id"]]  # fmt: skip
        g["follow_ups"] = [
            {k: v for k, v in f.items() if v is not None and k != "generation_id"}
            for f in follow_ups
            if f["generation_id"] == g["generation_id"]
        ]
    return {"trace_id": trace_id, "spans": span_tree(spans), "span_count": len(spans), "generations": generations}


def components(
    con: duckdb.DuckDBPyConnection, settings: FailureSettings, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per component in the window (``params``: since, until, app): spans, p50/p95 duration, error rate, and where
    failures occur: among the failed generations with a span of it, how often it errored or was slower than its
    usual p95 (over the spans of the generations that did not fail), next to the same among those generations."""
    failed = " OR ".join(f"coalesce({SIGNAL_SQL[s]}, false)" for s in settings.signals)
    sql = f"""
    WITH s AS (
        SELECT event_id, any_value(generation_id) AS generation_id, any_value(component) AS component,
               max(value) FILTER (WHERE metric = 'span_duration_ms') AS ms,
               max(value) FILTER (WHERE metric = 'span_error') AS err
        FROM scores
        WHERE metric IN ('span_duration_ms', 'span_error') AND component IS NOT NULL
          AND ts >= $since AND ts < $until AND ($app IS NULL OR app = $app)
        GROUP BY event_id
    ), o AS (
        SELECT generation_id, {OUTCOMES},
               max(value) FILTER (WHERE metric = 'error') AS error
        FROM scores
        WHERE generation_id IN (SELECT generation_id FROM s) AND component IS NULL
        GROUP BY generation_id
    ), f AS (
        SELECT generation_id, ({failed}) AS failed FROM o
    ), p AS (
        -- a component's usual p95: over the spans of generations that did not fail (all its spans if none)
        SELECT component, quantile_cont(ms, 0.95) AS p95_all,
               coalesce(quantile_cont(ms, 0.95) FILTER (WHERE f.failed IS NOT DISTINCT FROM false),
                        quantile_cont(ms, 0.95)) AS usual_p95
        FROM s LEFT JOIN f USING (generation_id) GROUP BY component
    ), per_generation AS (
        -- one row per (generation, component): did any of its spans of that component error, or run slow?
        SELECT s.generation_id, s.component, f.failed, max(s.err) >= 1 AS errored, bool_or(s.ms > p.usual_p95) AS slow
        FROM s JOIN p USING (component) JOIN f USING (generation_id)
        GROUP BY ALL
    )
    SELECT component,
           (SELECT count(*) FROM s WHERE s.component = c.component) AS spans,
           (SELECT quantile_cont(ms, 0.5) FROM s WHERE s.component = c.component) AS p50_ms,
           (SELECT p95_all FROM p WHERE p.component = c.component) AS p95_ms,
           (SELECT usual_p95 FROM p WHERE p.component = c.component) AS usual_p95_ms,
           (SELECT avg(err) FROM s WHERE s.component = c.component) AS error_rate,
           count(*) FILTER (WHERE failed) AS failed_generations,
           count(*) FILTER (WHERE failed AND errored) AS errored_in_failed,
           count(*) FILTER (WHERE failed AND slow) AS slow_in_failed,
           count(*) FILTER (WHERE failed AND (errored OR slow)) AS implicated_in_failed,
           count(*) FILTER (WHERE NOT failed) AS ok_generations,
           count(*) FILTER (WHERE NOT failed AND (errored OR slow)) AS implicated_in_ok
    FROM (SELECT DISTINCT component FROM s) c LEFT JOIN per_generation USING (component)
    GROUP BY component
    """
    out = []
    for row in _rows(con, sql, {**params, **signal_params(sql, settings)}):
        failed_n, ok_n = row["failed_generations"], row["ok_generations"]
        row["implicated_share_in_failed"] = row["implicated_in_failed"] / failed_n if failed_n else None
        row["implicated_share_in_ok"] = row["implicated_in_ok"] / ok_n if ok_n else None
        out.append(row)
    # where failures occur: the components most often erroring or slow in failed generations first
    return sorted(out, key=lambda r: (-(r["implicated_share_in_failed"] or 0), -r["spans"], r["component"]))
