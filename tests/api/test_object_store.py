"""The API over a data folder in an object store (moto's S3 server, ``tests/object_store.py``): it answers exactly
what it answers over a local folder holding the same files, and its database still reads nothing outside it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from api.deps import get_catalog
from api.settings import ApiSettings, get_settings
from sinks.store import Store
from tests.api.test_api_fuzz import APP, AUTH, LAST_6H, T0, counts, iso, write_data

DRIFT = {"reference_since": iso(T0 - timedelta(hours=6)), "reference_until": iso(T0 - timedelta(hours=3)),
         "current_since": iso(T0 - timedelta(hours=3)), "current_until": iso(T0)}  # fmt: skip

# GET requests whose answers depend only on the files (no run ids, ages or paths)
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/metrics/timeseries", {"metric": "thumbs_up", "window": "1h", **LAST_6H}),
    ("/v1/metrics/timeseries", {"metric": "edit_ratio", "window": "5m", "group_by": "model", **LAST_6H}),
    ("/v1/compare", {"dimension": "model", "a": "m1", "b": "m2", **LAST_6H}),
    ("/v1/drift", {"signal": "quality", **DRIFT}),
    ("/v1/drift", {"signal": "output_embedding", **DRIFT}),
    ("/v1/alerts", {}),
    ("/v1/alerts/a-resolved-2", {}),
    ("/v1/components", LAST_6H),
    ("/v1/judges", LAST_6H),
]


def _answers(root: str | Path) -> Iterator[tuple[str, int, Any]]:
    APP.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=root)
    try:
        client = TestClient(APP, headers=AUTH)
        for path, params in REQUESTS:
            answer = client.get(path, params=params)
            yield path, answer.status_code, answer.json()
    finally:
        APP.dependency_overrides.clear()


def test_the_api_answers_the_same_from_an_object_store(s3_root: str, tmp_path: Path) -> None:
    local = tmp_path / "data"
    write_data(local, T0)
    write_data(s3_root, T0)
    assert counts(s3_root) == counts(local) and counts(local)["events"] > 0
    from_s3, from_disk = list(_answers(s3_root)), list(_answers(local))
    assert [status for _, status, _ in from_disk] == [200] * len(REQUESTS), from_disk
    assert from_disk[0][2]["data"] and from_disk[4][2]["data"]  # real answers: a time series, alerts
    assert from_s3 == from_disk
    clusters = {}
    for root in (s3_root, local):
        APP.dependency_overrides[get_settings] = lambda root=root: ApiSettings(data_dir=root)
        try:
            client = TestClient(APP, headers=AUTH)
            if root == s3_root:
                pipeline = client.get("/v1/pipeline").json()
            answer = client.get("/v1/clusters", params=LAST_6H).json()  # a run: matched ids, stored in the root
        finally:
            APP.dependency_overrides.clear()
        clusters[str(root)] = [(c["cluster_id"], c["size"], c["failures"]) for c in answer["data"]]
    assert [w["host"] for w in pipeline["workers"]] == ["eval-1"]  # the status file, read from the bucket
    assert clusters[s3_root] == clusters[str(local)] and clusters[s3_root]
    assert Store(s3_root).list_files("cluster_runs")  # the run was stored in the bucket


def test_the_sandbox_allows_the_bucket_prefix_only(s3_root: str) -> None:
    cursor = get_catalog(s3_root).cursor()
    assert cursor.execute("SELECT count(*) > 0 FROM generations").fetchone() in {(True,), (False,)}
    bucket = s3_root.removeprefix("s3://").split("/")[0]
    for outside in (f"s3://{bucket}/other/x.parquet", f"{s3_root}-other/x.parquet", "/etc/hostname"):
        with pytest.raises(duckdb.PermissionException):
            cursor.execute("SELECT * FROM read_text($p)", {"p": outside})
