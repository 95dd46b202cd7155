from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routers.metrics import parse_window
from sinks.parquet import PartitionedParquetWriter
from sinks.schemas import SCORES_SCHEMA

T0 = datetime(2026, 11, 25, 8, 0)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    rng = random.Random(3)
    rows = []
    for i in range(600):
        rows.append(
            {
                "event_id": f"e{i}",
                "generation_id": f"g{i}",
                "ts": T0 + timedelta(minutes=rng.uniform(0, 300)),
                "app": rng.choice(["a1", "a2"]),
                "route": "answer",
                "model": rng.choice(["m1", "m2", None]),
                "prompt_version": "v1",
                "metric": rng.choice(["latency_ms", "edit_ratio"]),
                "value": rng.random() * 100,
            }
        )
    writer = PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA)
    writer.write("t", 0, 0, 299, rows[:300])
    writer.write("t", 1, 0, 299, rows[300:])
    return tmp_path


@pytest.fixture
def client(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(data_dir))
    return TestClient(create_app())


def direct(data_dir: Path, sql: str) -> list[tuple]:
    return duckdb.execute(sql.replace("SCORES", f"read_parquet('{data_dir}/scores/*/*.parquet')")).fetchall()


def test_health(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("group_by", ["model", "app", None])
def test_timeseries_matches_duckdb(client: TestClient, data_dir: Path, group_by: str | None) -> None:
    params = {"metric": "latency_ms", "window": "30m"} | ({"group_by": group_by} if group_by else {})
    body = client.get("/v1/metrics/timeseries", params=params).json()
    group = group_by or "NULL"
    rows = direct(
        data_dir,
        f"""
        SELECT time_bucket(INTERVAL 30 MINUTE, ts) b, {group} g, count(*), avg(value),
               quantile_cont(value, 0.5), quantile_cont(value, 0.95)
        FROM SCORES WHERE metric = 'latency_ms' GROUP BY ALL ORDER BY b, g NULLS FIRST""",
    )
    assert body["count"] == len(rows) == len(body["data"]) > 5
    for point, row in zip(body["data"], rows, strict=True):
        assert point["bucket"] == row[0].isoformat() + "Z"
        assert (point["group"], point["count"]) == (row[1], row[2])
        assert [point["mean"], point["p50"], point["p95"]] == pytest.approx(list(row[3:]))


def test_since_is_inclusive_and_until_exclusive(client: TestClient, data_dir: Path) -> None:
    params = {
        "metric": "edit_ratio",
        "window": "1h",
        "since": "2026-11-25T10:00:00+01:00",
        "until": "2026-11-25T11:00:00Z",
    }
    body = client.get("/v1/metrics/timeseries", params=params).json()
    [expected] = direct(
        data_dir,
        """SELECT count(*) FROM SCORES WHERE metric = 'edit_ratio'
                                      AND ts >= TIMESTAMP '2026-11-25 09:00' AND ts < TIMESTAMP '2026-11-25 11:00'""",
    )
    assert sum(p["count"] for p in body["data"]) == expected[0] > 0
    assert [p["bucket"] for p in body["data"]] == ["2026-11-25T09:00:00Z", "2026-11-25T10:00:00Z"]


def test_unknown_metric_is_empty_not_an_error(client: TestClient) -> None:
    assert client.get("/v1/metrics/timeseries", params={"metric": "nope"}).json() == {"data": [], "count": 0}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "Field required"),
        ({"metric": "x", "window": "1y"}, "window must look like"),
        ({"metric": "x", "window": "0m"}, "between 1s and 366d"),
        ({"metric": "x", "group_by": "session_id"}, "Input should be"),
        ({"metric": "x; DROP TABLE scores"}, "String should match pattern"),
        ({"metric": "x", "since": "yesterday"}, "valid datetime"),
        ({"metric": "x", "since": "2026-11-25T10:00:00Z", "until": "2026-11-25T10:00:00Z"}, "before `until`"),
        (
            {"metric": "x", "window": "1s", "since": "2026-11-24T00:00:00Z", "until": "2026-11-25T00:00:00Z"},
            "more than 10000 points",
        ),
    ],
)
def test_invalid_parameters_are_422_with_a_message(client: TestClient, params: dict, message: str) -> None:
    resp = client.get("/v1/metrics/timeseries", params=params)
    assert resp.status_code == 422
    assert message in resp.text


def test_parse_window() -> None:
    assert [parse_window(w) for w in ("45s", "5m", "2h", "1d", "1w")] == [45, 300, 7200, 86400, 604800]
    with pytest.raises(ValueError):
        parse_window("367d")


def test_empty_data_dir_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(tmp_path / "nothing-yet"))
    resp = TestClient(create_app()).get("/v1/metrics/timeseries", params={"metric": "latency_ms"})
    assert resp.status_code == 200 and resp.json() == {"data": [], "count": 0}
