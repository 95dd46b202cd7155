"""Failure clusters of a window: read what the sinks wrote, cluster (:mod:`metrics.clusters`), store the run
(:mod:`sinks.clusters`) so cluster ids stay stable, and answer. Used by ``/v1/clusters`` and ``evalstream clusters``.

A window's generations are those of ``events`` with ``since <= ts < until`` (and the app and route asked for); their
outcomes come from every score recorded since ``since`` (feedback arrives after the generation); a generation
without the chosen embedding (an error, embeddings off) is counted in ``without_embeddings`` and left out.

Example (an empty data folder: nothing to cluster, and the answer says why)::

    >>> import tempfile
    >>> from datetime import datetime
    >>> from sinks.catalog import connect
    >>> root = tempfile.mkdtemp()
    >>> out = find_clusters(connect(root), root, ClusterRequest(datetime(2026, 11, 30), datetime(2026, 12, 1)),
    ...                     FailureSettings())
    >>> out["count"], out["reason"]
    (0, 'too few failures to cluster: 0 (at least 20)')
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from api.queries import OUTCOME_METRICS, OUTCOMES, signal_columns, signal_params, utc_text
from metrics.analysis import FailureSettings
from metrics.clusters import NOISE, ClusterParams, cluster_failures, ctfidf_labels, match_ids, sample_rows
from sinks.catalog import query, query_arrow
from sinks.clusters import ClusterRow, ClusterRun, RunLock, created_at, next_id_number, previous_centroids, write_run
from sinks.store import Store

N_EXAMPLES = 5
LABEL_TEXTS = 300  # failures per cluster whose inputs name it (a hashed sample)
BACKGROUND_TEXTS = 500  # failures outside every cluster, the labels' background class

_WINDOW_SQL = """
WITH g AS (
    SELECT generation_id, ts, model, prompt_version, CAST(error IS NOT NULL AS INTEGER) AS error
    FROM events
    WHERE type = 'generation' AND ts >= $since AND ts < $until
      AND ($app IS NULL OR app = $app) AND ($route IS NULL OR route = $route)
), o AS (
    SELECT generation_id, {outcomes}
    FROM scores
    WHERE ts >= $since AND generation_id IN (SELECT generation_id FROM g) AND list_contains($outcome_metrics, metric)
    GROUP BY generation_id
), e AS (
    SELECT generation_id, {column} AS embedding
    FROM embeddings
    WHERE ts >= $since AND ts < $until AND {column} IS NOT NULL
      AND ($app IS NULL OR app = $app) AND ($route IS NULL OR route = $route)
)
SELECT generation_id, g.ts, g.model, g.prompt_version, e.embedding, hash(generation_id) AS h, {signals}
FROM g LEFT JOIN o USING (generation_id) LEFT JOIN e USING (generation_id)
"""


@dataclass(frozen=True)
class ClusterRequest:
    """A window (naive UTC, ``until`` exclusive), its scope, and optional overrides of the configured signals."""

    since: datetime
    until: datetime
    app: str | None = None
    route: str | None = None
    signals: tuple[str, ...] | None = None
    min_lift: float = 1.0
    alpha: float = 0.01  # listed only when the cluster's adjusted p-value is below this


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def signal_matrix(table: pa.Table, signals: tuple[str, ...]) -> np.ndarray:
    """One boolean column per signal (the window query's ``signal_<name>`` columns), one row per generation."""
    columns = [_column(table, f"signal_{s}").astype(bool) for s in signals]
    return np.stack(columns, axis=1) if columns else np.zeros((table.num_rows, 0), dtype=bool)


def _counts(values: np.ndarray, rows: np.ndarray, failed: np.ndarray, key: str) -> list[dict[str, Any]]:
    generations = Counter(values[rows].tolist())
    failures = Counter(values[rows[failed[rows]]].tolist())
    return sorted(
        ({key: v, "generations": n, "failures": failures.get(v, 0)} for v, n in generations.items()),
        key=lambda d: (-d["failures"], -d["generations"], str(d[key])),
    )


def _texts(con: duckdb.DuckDBPyConnection, ids: list[str], since: datetime, until: datetime) -> dict[str, tuple]:
    if not ids:
        return {}
    sql = """SELECT generation_id, input, output, trace_id
             FROM events JOIN (SELECT unnest($ids) AS generation_id) USING (generation_id)
             WHERE type = 'generation' AND ts >= $since AND ts < $until"""
    rows = query(con, sql, {"since": since, "until": until, "ids": ids})[1]
    return {str(r[0]): (r[1], r[2], r[3]) for r in rows}


def find_clusters(
    con: duckdb.DuckDBPyConnection,
    root: str | Path | Store,
    request: ClusterRequest,
    settings: FailureSettings,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Cluster one window's failures, store the run under ``root`` (the data folder) and return the answer of
    ``GET /v1/clusters`` (see docs/api.md)."""
    signals = request.signals or settings.signals
    run_at = (now or datetime.now(UTC)).replace(tzinfo=None)
    answer: dict[str, Any] = {
        "data": [], "count": 0, "failures": 0, "noise": 0, "generations": 0, "without_embeddings": 0,
        "baseline_failure_rate": None, "signals": list(signals), "embedding": settings.embedding,
        "since": utc_text(request.since), "until": utc_text(request.until), "run_id": None, "reason": None,
    }  # fmt: skip
    params: dict[str, Any] = {"since": request.since, "until": request.until}
    params |= {"app": request.app, "route": request.route}
    sql = _WINDOW_SQL.format(
        column=f"{settings.embedding}_embedding", outcomes=OUTCOMES, signals=signal_columns(signals)
    )
    params = {**params, "outcome_metrics": list(OUTCOME_METRICS), **signal_params(sql, settings)}
    table = query_arrow(con, sql, params)
    embedded = table.column("embedding").is_valid().to_numpy(zero_copy_only=False)
    answer["without_embeddings"] = int(table.num_rows - embedded.sum())
    table = table.filter(pa.array(embedded))
    n = table.num_rows
    answer["generations"] = n
    flags = signal_matrix(table, signals)
    failed: np.ndarray = np.asarray(flags.any(axis=1), dtype=bool)
    answer["failures"] = int(failed.sum())
    if n:
        answer["baseline_failure_rate"] = float(failed.mean())
    if failed.sum() < settings.min_failures:
        answer["reason"] = f"too few failures to cluster: {int(failed.sum())} (at least {settings.min_failures})"
        return answer
    vectors = table.column("embedding").combine_chunks().values.to_numpy(zero_copy_only=False).reshape(n, -1)
    keys = _column(table, "h").astype(np.uint64)
    params_c = ClusterParams(min_cluster_size=settings.min_cluster_size, min_failures=settings.min_failures)
    result = cluster_failures(vectors, failed, params_c, keys)
    answer["noise"] = int((failed & (result.assignment == NOISE)).sum())
    if not result.clusters:
        answer["reason"] = "no cluster: the failures are spread out (all noise)"
        return answer

    ids = _column(table, "generation_id")
    ts = _column(table, "ts")
    models, versions = _column(table, "model"), _column(table, "prompt_version")
    order = np.argsort(-result.similarity, kind="stable")
    members = {c.index: order[result.assignment[order] == c.index] for c in result.clusters}  # nearest first
    noise_failures = np.flatnonzero(failed & (result.assignment == NOISE))
    background = sample_rows(keys, BACKGROUND_TEXTS, noise_failures)
    # a hashed sample of each cluster's failures, not the nearest its centre: those can all share one phrasing
    label_rows = {c: sample_rows(keys, LABEL_TEXTS, rows[failed[rows]]) for c, rows in members.items()}
    wanted = {str(ids[r]) for rows in label_rows.values() for r in rows} | {str(ids[r]) for r in background}
    texts = _texts(con, sorted(wanted), request.since, request.until)

    def inputs(rows: np.ndarray) -> list[str]:
        return [t for r in rows if (t := (texts.get(str(ids[r])) or (None, None, None))[0])]

    labels = ctfidf_labels([inputs(label_rows[c.index]) for c in result.clusters], inputs(background))
    run = ClusterRun(
        uuid.uuid4().hex[:12],
        run_at,
        request.app,
        request.route,
        request.since,
        request.until,
        ",".join(signals),
        settings.embedding,
    )
    rows_out: list[ClusterRow] = []
    data: list[dict[str, Any]] = []
    with RunLock(root).held():
        centroids = result.centroids[[c.index for c in result.clusters]]
        matched = match_ids(centroids, previous_centroids(root, request.app, request.route), settings.match_similarity)
        number = next_id_number(root)
        first = created_at(root, [m for m in matched if m])
        for rank, (cluster, label, old) in enumerate(zip(result.clusters, labels, matched, strict=True), start=1):
            cid = old or f"c-{number}"
            number += 0 if old else 1
            rows = members[cluster.index]
            fails = rows[failed[rows]]
            examples = []
            for r in fails[:N_EXAMPLES]:
                text_in, text_out, trace_id = texts.get(str(ids[r]), (None, None, None))
                examples.append({
                    "generation_id": str(ids[r]), "input": text_in, "output": text_out, "trace_id": trace_id,
                    "signals": [s for s, hit in zip(signals, flags[r], strict=True) if hit],
                    "similarity": round(float(result.similarity[r]), 4),
                })  # fmt: skip
            fail_ts = ts[fails]
            item: dict[str, Any] = {
                "cluster_id": cid, "rank": rank, "label": label, "size": cluster.size, "failures": cluster.failures,
                "failure_rate": cluster.failure_rate, "baseline_failure_rate": result.baseline_failure_rate,
                "lift": cluster.lift, "p_value": cluster.p_value,
                "signals": {s: int(flags[fails, i].sum()) for i, s in enumerate(signals)},
                "examples": examples,
                "models": _counts(models, rows, failed, "model"),
                "prompt_versions": _counts(versions, rows, failed, "prompt_version"),
                "first_seen": utc_text(fail_ts.min().astype("datetime64[us]").astype(datetime)),
                "last_seen": utc_text(fail_ts.max().astype("datetime64[us]").astype(datetime)),
                "created_at": utc_text(first.get(cid, run_at)),
            }  # fmt: skip
            data.append(item)
            rows_out.append(ClusterRow(
                cid, rank, label, cluster.size, cluster.failures, cluster.failure_rate, result.baseline_failure_rate,
                cluster.lift, float(result.radii[cluster.index]), result.centroids[cluster.index],
                json.dumps({k: item[k] for k in ("signals", "examples", "models", "prompt_versions", "first_seen",
                                                  "last_seen")}), first.get(cid, run_at),
            ))  # fmt: skip
        in_cluster = np.concatenate([members[c.index] for c in result.clusters])
        id_of = np.array([row.cluster_id for row in rows_out], dtype=object)
        position = np.empty(len(result.centroids), dtype=np.int64)
        position[[c.index for c in result.clusters]] = np.arange(len(result.clusters))
        write_run(root, run, rows_out, {
            "cluster_id": id_of[position[result.assignment[in_cluster]]], "generation_id": ids[in_cluster],
            "failed": failed[in_cluster], "similarity": result.similarity[in_cluster],
        })  # fmt: skip
    shown = [item for item in data if item["lift"] >= request.min_lift and item["p_value"] < request.alpha]
    for rank, item in enumerate(shown, start=1):  # ranks count the listed clusters (the stored run ranks all)
        item["rank"] = rank
    answer.update(data=shown, count=len(shown), run_id=run.run_id)
    if not shown:
        answer["reason"] = (
            f"no cluster with lift >= {request.min_lift:g} and p < {request.alpha:g}: failures are about as frequent "
            "everywhere"
        )
    return answer


@dataclass
class ClusterCache:
    """Answers kept per request for ``ttl_s`` seconds; concurrent identical requests compute once (the others
    wait for the first), so a dashboard's refreshes do not each cluster a large window."""

    ttl_s: float
    _entries: dict[Any, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _locks: dict[Any, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._entries.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
            value = compute()
            with self._guard:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] < self.ttl_s}
                self._entries[key] = (now, value)
                # a lock per request seen would pile up: keep those of live entries and of requests under way
                self._locks = {k: lk for k, lk in self._locks.items() if k in self._entries or lk.locked()}
            return value
