"""sinks.clusters: cluster runs stored so ids carry over, scoped by app and route, serialised across processes."""

from __future__ import annotations

import multiprocessing
import time
from datetime import datetime, timedelta
from pathlib import Path

from sinks.catalog import connect
from sinks.clusters import ClusterRow, ClusterRun, RunLock, created_at, next_id_number, previous_centroids, write_run

T0 = datetime(2026, 11, 30, 12)


def run(root: Path, run_id: str, at: datetime, app: str | None, route: str | None, ids: list[str]) -> None:
    rows = [
        ClusterRow(cid, i + 1, f"label {cid}", 10, 5, 0.5, 0.1, 5.0, 0.2, [float(i), 1.0, at.minute], "{}", at)
        for i, cid in enumerate(ids)
    ]
    members = {"cluster_id": ids, "generation_id": [f"{run_id}-{c}" for c in ids], "failed": [True] * len(ids),
               "similarity": [0.9] * len(ids)}  # fmt: skip
    write_run(root, ClusterRun(run_id, at, app, route, at - timedelta(hours=1), at, "error", "input"), rows, members)


def test_previous_centroids_are_the_latest_of_each_id_in_the_scope(tmp_path: Path) -> None:
    run(tmp_path, "r1", T0, "bot", None, ["c-1", "c-2"])
    run(tmp_path, "r2", T0 + timedelta(minutes=5), "bot", None, ["c-1"])
    run(tmp_path, "r3", T0 + timedelta(minutes=9), "bot", "answer", ["c-3"])
    run(tmp_path, "r4", T0 + timedelta(minutes=7), None, None, ["c-4"])
    found = {cid: v.tolist() for cid, v in previous_centroids(tmp_path, "bot", None)}
    assert found == {"c-1": [0.0, 1.0, 5.0], "c-2": [1.0, 1.0, 0.0]}
    assert [cid for cid, _ in previous_centroids(tmp_path, "bot", "answer")] == ["c-3"]
    assert [cid for cid, _ in previous_centroids(tmp_path, None, None)] == ["c-4"]
    assert previous_centroids(tmp_path, "other", None) == []
    assert next_id_number(tmp_path) == 5
    assert created_at(tmp_path, ["c-1", "c-9"]) == {"c-1": T0}
    con = connect(tmp_path)
    assert con.execute("SELECT cluster_id, run_id FROM clusters ORDER BY 1").fetchall() == [
        ("c-1", "r2"), ("c-2", "r1"), ("c-3", "r3"), ("c-4", "r4"),
    ]  # fmt: skip
    assert con.execute("SELECT count(*) FROM cluster_member_runs").fetchone() == (5,)


def test_an_empty_folder_has_no_previous_clusters(tmp_path: Path) -> None:
    assert previous_centroids(tmp_path, None, None) == [] and next_id_number(tmp_path) == 1
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM clusters").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM cluster_members").fetchone() == (0,)


def _hold(root: str, seconds: float, out: multiprocessing.Queue) -> None:
    with RunLock(root).held():
        out.put(("in", time.monotonic()))
        time.sleep(seconds)
        out.put(("out", time.monotonic()))


def test_the_run_lock_serialises_processes(tmp_path: Path) -> None:
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hold, args=(str(tmp_path), 0.4, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    events = sorted((queue.get(timeout=5) for _ in range(4)), key=lambda e: e[1])
    assert [kind for kind, _ in events] == ["in", "out", "in", "out"]
