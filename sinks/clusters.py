"""Failure-cluster runs as datasets of their own: what each run found, and which generations fell where.

- ``cluster_runs``: one row per cluster per run: its id, rank, label, counts, lift, centroid and radius, and the
  rest of what the API answered (examples, models, signals…) as JSON in ``detail``;
- ``cluster_member_runs``: one row per generation in a cluster's region per run (``failed``: whether it was one
  of the failures, ``similarity``: its cosine to the centroid).

Files are ``<root>/<dataset>/dt=<run date>/<run time>-<run id>.parquet``, written atomically, so a reader sees a
run whole or not at all. Cluster ids are kept from run to run by centroid (:func:`metrics.clusters.match_ids`):
:func:`previous_centroids` gives each id's latest centroid in a scope (app and route), :func:`next_id_number` the
next free number. :class:`RunLock` serialises the read-match-write of runs across threads and processes.

Example::

    >>> import tempfile
    >>> from datetime import datetime
    >>> root = Path(tempfile.mkdtemp())
    >>> noon = datetime(2026, 11, 30, 12)
    >>> run = ClusterRun("r1", noon, "bot", None, datetime(2026, 11, 30), noon,
    ...                  "error", "input")
    >>> write_run(root, run, [ClusterRow("c-1", 1, "refund, order", 40, 30, 0.75, 0.1, 7.5, 0.3, [1.0, 0.0], "{}",
    ...                                   noon)], {"cluster_id": ["c-1"], "generation_id": ["g1"], "failed": [True],
    ...                                            "similarity": [0.9]})
    >>> [(cid, v.tolist()) for cid, v in previous_centroids(root, "bot", None)]
    [('c-1', [1.0, 0.0])]
    >>> next_id_number(root)
    2
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sinks.store import Store, open_store

TS = pa.timestamp("us")

CLUSTER_RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("run_at", TS), ("app", pa.string()), ("route", pa.string()), ("since", TS),
    ("until", TS), ("signals", pa.string()), ("embedding", pa.string()), ("cluster_id", pa.string()),
    ("rank", pa.int32()), ("label", pa.string()), ("size", pa.int64()), ("failures", pa.int64()),
    ("failure_rate", pa.float64()), ("baseline_failure_rate", pa.float64()), ("lift", pa.float64()),
    ("radius", pa.float32()), ("centroid", pa.list_(pa.float32())), ("detail", pa.string()),
    ("created_at", TS),
])  # fmt: skip

CLUSTER_MEMBERS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("run_at", TS), ("cluster_id", pa.string()), ("generation_id", pa.string()),
    ("failed", pa.bool_()), ("similarity", pa.float32()),
])  # fmt: skip

RUNS, MEMBERS = "cluster_runs", "cluster_member_runs"


@dataclass(frozen=True)
class ClusterRun:
    """What one run was asked: its id and time (naive UTC), scope, window, failure signals (comma-separated) and
    which embedding it clustered."""

    run_id: str
    run_at: datetime
    app: str | None
    route: str | None
    since: datetime
    until: datetime
    signals: str
    embedding: str


@dataclass(frozen=True)
class ClusterRow:
    cluster_id: str
    rank: int
    label: str
    size: int
    failures: int
    failure_rate: float
    baseline_failure_rate: float
    lift: float
    radius: float
    centroid: Sequence[float]
    detail: str  # JSON
    created_at: datetime  # when this id first appeared


def _file(dataset: str, run: ClusterRun) -> str:
    return f"{dataset}/dt={run.run_at.date().isoformat()}/{run.run_at.strftime('%Y%m%dT%H%M%S%f')}-{run.run_id}.parquet"


def write_run(
    root: str | Path | Store, run: ClusterRun, clusters: Sequence[ClusterRow], members: Mapping[str, Any]
) -> None:
    """Store one run: its clusters, then their members (columns ``cluster_id``, ``generation_id``, ``failed``,
    ``similarity``: sequences or arrays of one length)."""
    store = open_store(root)
    n = len(clusters)
    common = {name: [getattr(run, name)] * n for name in ("run_id", "run_at", "app", "route", "since", "until",
                                                          "signals", "embedding")}  # fmt: skip
    rows = {name: [getattr(c, name) for c in clusters] for name in CLUSTER_RUNS_SCHEMA.names if name not in common}
    rows["centroid"] = [np.asarray(c.centroid, np.float32).tolist() for c in clusters]
    store.write_parquet(_file(RUNS, run), pa.table({**common, **rows}, schema=CLUSTER_RUNS_SCHEMA))
    m = len(members["generation_id"])
    columns = {"run_id": pa.array([run.run_id] * m, pa.string()), "run_at": pa.array([run.run_at] * m, TS)}
    for name in ("cluster_id", "generation_id", "failed", "similarity"):
        columns[name] = pa.array(members[name], CLUSTER_MEMBERS_SCHEMA.field(name).type)
    store.write_parquet(_file(MEMBERS, run), pa.table(columns, schema=CLUSTER_MEMBERS_SCHEMA))


def _runs(root: str | Path | Store, columns: list[str]) -> pa.Table:
    store = open_store(root)
    files = [rel for rel in store.list_files(RUNS) if rel.endswith(".parquet") and "/dt=" in rel]
    if not files:
        return CLUSTER_RUNS_SCHEMA.empty_table().select(columns)
    return store.read_table(files, schema=CLUSTER_RUNS_SCHEMA, columns=columns)


def previous_centroids(root: str | Path | Store, app: str | None, route: str | None) -> list[tuple[str, np.ndarray]]:
    """Each cluster id of the scope (same app and route, None matching None) with its latest centroid."""
    table = _runs(root, ["run_at", "app", "route", "cluster_id", "centroid"])
    scope = pc.and_(
        pc.is_null(table["app"]) if app is None else pc.equal(table["app"], app),
        pc.is_null(table["route"]) if route is None else pc.equal(table["route"], route),
    )
    latest: dict[str, tuple[datetime, np.ndarray]] = {}
    for row in table.filter(pc.fill_null(scope, False)).to_pylist():
        seen = latest.get(row["cluster_id"])
        if seen is None or row["run_at"] > seen[0]:
            latest[row["cluster_id"]] = (row["run_at"], np.asarray(row["centroid"], np.float32))
    return sorted(((cid, v) for cid, (_, v) in latest.items()), key=lambda item: item[0])


def created_at(root: str | Path | Store, cluster_ids: Sequence[str]) -> dict[str, datetime]:
    """When each of ``cluster_ids`` first appeared in a stored run."""
    table = _runs(root, ["cluster_id", "created_at"])
    wanted = set(cluster_ids)
    out: dict[str, datetime] = {}
    for row in table.to_pylist():
        if row["cluster_id"] in wanted:
            at = row["created_at"]
            out[row["cluster_id"]] = min(at, out.get(row["cluster_id"], at))
    return out


def next_id_number(root: str | Path | Store) -> int:
    """One more than the largest number of a stored ``c-<number>`` id (1 when none)."""
    ids = _runs(root, ["cluster_id"])["cluster_id"].to_pylist()
    numbers = [int(i[2:]) for i in ids if i and i.startswith("c-") and i[2:].isdigit()]
    return max(numbers, default=0) + 1


class RunLock:
    """Held while a run matches ids and writes: one thread at a time in this process (a lock) and one process at a
    time on this data folder (``flock`` on ``<root>/cluster_runs/.lock``). An object store has no lock: the file is
    then local (``<tmp>/evalstream-clusters-<digest of the URL>.lock``), which serialises the runs of one machine
    only; run cluster jobs from one machine (the API's ``/v1/clusters``, or ``evalstream clusters``)."""

    _threads = threading.Lock()

    def __init__(self, root: str | Path | Store) -> None:
        store = open_store(root)
        if store.root is not None:
            self.path = store.root / RUNS / ".lock"
        else:
            digest = hashlib.sha1(store.uri.encode()).hexdigest()[:16]
            self.path = Path(tempfile.gettempdir()) / f"evalstream-clusters-{digest}.lock"

    @contextmanager
    def held(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._threads, open(self.path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
