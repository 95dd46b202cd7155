"""``GET /v1/metrics/timeseries`` checked against an oracle in plain Python, never against the API's own SQL.

The oracle (:func:`oracle`) recomputes every point from the rows the test wrote:

- bucket start: ``ORIGIN + floor((ts - ORIGIN) / window) * window`` with ``ORIGIN = 2000-01-03 00:00:00``
  (naive UTC). That is DuckDB's ``time_bucket(width, ts)`` without an ``origin`` argument: for widths that hold
  no months or years its grid is anchored at 2000-01-03, a Monday at midnight. Hence every window that divides a
  day is aligned to midnight UTC, ``1d`` buckets start at midnight, ``1w`` buckets start on Monday 00:00 UTC
  (*not* on a Thursday, as flooring the Unix epoch would give), and other windows (``7h``, ``2d``) lie on the
  grid through 2000-01-03. The router only turns ``window`` into seconds (``1w`` = 604 800 s) and adds no
  alignment of its own.
- group: the value of the ``group_by`` column (None stays None; ``group_by=none`` or no ``group_by``: None).
- filter: ``metric`` equal, ``since <= ts < until``.
- count: rows in the (bucket, group); mean: arithmetic mean of their values; p50/p95: ``quantile_cont``,
  i.e. linear interpolation between the closest ranks: with the values sorted, ``pos = (n - 1) * q`` and
  ``v[floor(pos)] + (v[ceil(pos)] - v[floor(pos)]) * (pos - floor(pos))`` (numpy's ``method="linear"``).
- order: by bucket, then group with None first.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routers.metrics import parse_window
from sinks.parquet import PartitionedParquetWriter
from sinks.schemas import SCORES_SCHEMA

ORIGIN = datetime(2000, 1, 3)  # DuckDB's default time_bucket origin (a Monday) for widths without months
URL = "/v1/metrics/timeseries"
US = timedelta(microseconds=1)
START = datetime(2026, 11, 21)  # a Saturday: the random data spans Sat 21 .. Tue 24 November, two ISO weeks
TOO_MANY = "more than 10000 points"


# --- the oracle ---------------------------------------------------------------------------------------------


def bucket_start(ts: datetime, window_s: int) -> datetime:
    """Start of the bucket of ``ts``: floor to a grid of ``window_s`` seconds anchored at :data:`ORIGIN`."""
    width = timedelta(seconds=window_s)
    return ORIGIN + (ts - ORIGIN) // width * width


def quantile_cont(values: list[float], q: float) -> float:
    """``quantile_cont``: linear interpolation between the closest ranks of the sorted values."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def oracle(
    rows: list[dict[str, Any]],
    metric: str,
    window_s: int,
    group_by: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The points the API should answer for ``rows`` (``since``/``until`` naive UTC; see the module docstring)."""
    cells: dict[tuple[datetime, str | None], list[float]] = defaultdict(list)
    for row in rows:
        ts = row["ts"]
        if row["metric"] != metric or (since and ts < since) or (until and ts >= until):
            continue
        if any(row[column] != value for column, value in (filters or {}).items()):
            continue
        group = row[group_by] if group_by not in (None, "none") else None
        cells[bucket_start(ts, window_s), group].append(row["value"])
    points = []
    for bucket, group in sorted(cells, key=lambda key: (key[0], key[1] is not None, key[1] or "")):
        values = cells[bucket, group]
        points.append(
            {
                "bucket": bucket.isoformat() + "Z",
                "group": group,
                "count": len(values),
                "mean": sum(values) / len(values),
                "p50": quantile_cont(values, 0.5),
                "p95": quantile_cont(values, 0.95),
            }
        )
    return points


def assert_same_points(body: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    """Every point of the API's answer equals the expected one (floats with ``pytest.approx``), in order."""
    assert set(body) == {"data", "count"}
    assert body["count"] == len(body["data"]) == len(expected)
    for got, want in zip(body["data"], expected, strict=True):
        assert got == pytest.approx(want), (got, want)


# --- data ---------------------------------------------------------------------------------------------------


def score_row(i: int, ts: datetime, value: float, metric: str = "x", **groups: str | None) -> dict[str, Any]:
    """A ``scores`` row; group columns default to ``a``/``r``/``m``/``v``."""
    return {
        "event_id": f"e{i}",
        "generation_id": f"g{i}",
        "ts": ts,
        "app": "a",
        "route": "r",
        "model": "m",
        "prompt_version": "v",
        "metric": metric,
        "value": value,
    } | groups


def write_scores(root: Path, rows: list[dict[str, Any]], partitions: int = 1) -> Path:
    """Write ``rows`` as the worker's sink does (spread over ``partitions`` source partitions); returns ``root``."""
    writer = PartitionedParquetWriter(root, "scores", SCORES_SCHEMA)
    for p in range(partitions):
        part = rows[p::partitions]
        writer.write("t", p, 0, max(len(part) - 1, 0), part)
    return root


def make_client(root: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """An API client reading ``root`` (through ``EVALSTREAM_DATA_DIR``, as in production)."""
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(root))
    return TestClient(create_app())


def random_rows() -> list[dict[str, Any]]:
    """Seeded rows: 2 metrics, several groups (with None models), ties, ~3.5 days with exact day boundaries."""
    rng = random.Random(3)
    stamps = [START + timedelta(seconds=rng.uniform(0, 3.5 * 86400)) for _ in range(1200)]
    for day in (22, 23, 24):  # exactly on a day (and week) boundary and one microsecond before
        midnight = datetime(2026, 11, day)
        stamps += [midnight, midnight - US, midnight, midnight - US]
    rows = []
    for i, ts in enumerate(stamps):
        value = round(rng.uniform(0, 100), 1) if i % 3 else float(rng.choice([1, 2, 3]))  # ties, too
        rows.append(
            score_row(
                i,
                ts,
                value,
                metric=rng.choice(["latency_ms", "edit_ratio"]),
                app=rng.choice(["a1", "a2", "a3"]),
                route=rng.choice(["answer", "search"]),
                model=rng.choice(["m1", "m2", None]),
                prompt_version=rng.choice(["v1", "v2"]),
            )
        )
    return rows


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    """The seeded random rows (a fresh list per test)."""
    return random_rows()


@pytest.fixture
def client(tmp_path: Path, rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """An API client over the seeded random rows, written through three source partitions."""
    return make_client(write_scores(tmp_path, rows, partitions=3), monkeypatch)


# --- the oracle itself, on hand-worked values ---------------------------------------------------------------


def test_oracle_quantile_is_linear_interpolation() -> None:
    """The oracle's quantile matches hand-worked values and numpy's ``method="linear"``."""
    assert quantile_cont([10.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile_cont([10.0, 1.0, 2.0], 0.95) == pytest.approx(9.2)  # pos 1.9: 2 + 0.9 * (10 - 2)
    assert quantile_cont([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert quantile_cont([4.0, 1.0, 3.0, 2.0], 0.95) == pytest.approx(3.85)  # pos 2.85: 3 + 0.85 * 1
    assert quantile_cont([7.0], 0.95) == 7.0
    rng = random.Random(1)
    for n in (1, 2, 5, 20, 101):
        values = [rng.uniform(-5, 5) for _ in range(n)]
        for q in (0.5, 0.95):
            assert quantile_cont(values, q) == pytest.approx(float(np.quantile(values, q, method="linear")))


@pytest.mark.parametrize(
    ("ts", "window_s", "start"),
    [
        (datetime(2026, 11, 25, 23, 59, 59, 999999), 86400, datetime(2026, 11, 25)),
        (datetime(2026, 11, 26), 86400, datetime(2026, 11, 26)),
        (datetime(2026, 11, 25, 10, 29, 59), 1800, datetime(2026, 11, 25, 10)),
        (datetime(2026, 11, 25, 10, 30), 1800, datetime(2026, 11, 25, 10, 30)),
        (datetime(2026, 11, 25, 0, 1, 29), 90, datetime(2026, 11, 25, 0, 0, 0)),
        (datetime(2026, 11, 25, 0, 1, 30), 90, datetime(2026, 11, 25, 0, 1, 30)),
        # 1w: Monday 2026-11-23 .. Sunday 2026-11-29 (the Unix epoch grid would start on Thursday 2026-11-19)
        (datetime(2026, 11, 22, 23, 59, 59, 999999), 604800, datetime(2026, 11, 16)),
        (datetime(2026, 11, 23), 604800, datetime(2026, 11, 23)),
        (datetime(2026, 11, 26), 604800, datetime(2026, 11, 23)),
        (datetime(2026, 11, 29, 23, 59, 59, 999999), 604800, datetime(2026, 11, 23)),
        (datetime(2026, 11, 30), 604800, datetime(2026, 11, 30)),
        # 7h does not divide a day: 2026-11-25 00:00 is 9823 d = 235 752 h = 7 h * 33 678 + 6 h after 2000-01-03,
        # so grid lines lie at 2026-11-24 18:00 and 2026-11-25 01:00 (not at midnight)
        (datetime(2026, 11, 25, 0, 59, 59), 25200, datetime(2026, 11, 24, 18)),
        (datetime(2026, 11, 25, 1), 25200, datetime(2026, 11, 25, 1)),
    ],
)
def test_oracle_bucket_start_hand_worked(ts: datetime, window_s: int, start: datetime) -> None:
    """The oracle's bucket start is the hand-worked one (midnight-aligned days, Monday weeks)."""
    assert bucket_start(ts, window_s) == start


# --- the API against the oracle -----------------------------------------------------------------------------


def test_random_data_spans_several_days_groups_and_buckets(rows: list[dict[str, Any]]) -> None:
    """The seeded data is not degenerate: two ISO weeks, four dates, every group value, both metrics."""
    assert {r["ts"].date() for r in rows} == {datetime(2026, 11, d).date() for d in (21, 22, 23, 24)}
    assert {bucket_start(r["ts"], 604800) for r in rows} == {datetime(2026, 11, 16), datetime(2026, 11, 23)}
    assert {r["model"] for r in rows} == {"m1", "m2", None}
    assert {r["metric"] for r in rows} == {"latency_ms", "edit_ratio"}


@pytest.mark.parametrize("window", ["90s", "30m", "1h", "7h", "1d", "2d", "1w"])
@pytest.mark.parametrize("group_by", [None, "none", "app", "route", "model", "prompt_version"])
def test_timeseries_matches_oracle(
    client: TestClient, rows: list[dict[str, Any]], window: str, group_by: str | None
) -> None:
    """Every point (bucket, group, count, mean, p50, p95) equals the plain-Python oracle's, in order."""
    params = {"metric": "latency_ms", "window": window} | ({"group_by": group_by} if group_by else {})
    resp = client.get(URL, params=params)
    assert resp.status_code == 200, resp.text
    expected = oracle(rows, "latency_ms", parse_window(window), group_by)
    assert len({p["bucket"] for p in expected}) >= 2
    groups = {None: 1, "none": 1, "app": 3, "route": 2, "model": 3, "prompt_version": 2}[group_by]
    assert len({p["group"] for p in expected}) == groups
    assert_same_points(resp.json(), expected)


@pytest.mark.parametrize(
    "filters",
    [{"app": "a2"}, {"route": "search"}, {"model": "m1"}, {"prompt_version": "v2"}, {"app": "a1", "model": "m2"}],
)
@pytest.mark.parametrize("group_by", [None, "app", "model"])
def test_filters_match_oracle(
    client: TestClient, rows: list[dict[str, Any]], filters: dict[str, str], group_by: str | None
) -> None:
    params = {"metric": "edit_ratio", "window": "7h", **filters} | ({"group_by": group_by} if group_by else {})
    resp = client.get(URL, params=params)
    assert resp.status_code == 200, resp.text
    expected = oracle(rows, "edit_ratio", parse_window("7h"), group_by, filters=filters)
    assert 0 < sum(p["count"] for p in expected) < sum(r["metric"] == "edit_ratio" for r in rows)
    assert_same_points(resp.json(), expected)


@pytest.mark.parametrize(
    ("since", "until", "since_utc", "until_utc"),
    [
        ("2026-11-22T00:00:00Z", "2026-11-24T00:00:00Z", datetime(2026, 11, 22), datetime(2026, 11, 24)),
        ("2026-11-22T01:00:00+01:00", "2026-11-23T12:30:00", datetime(2026, 11, 22), datetime(2026, 11, 23, 12, 30)),
        ("2026-11-22T10:17:03.5Z", None, datetime(2026, 11, 22, 10, 17, 3, 500000), None),
        (None, "2026-11-23T00:00:00-05:00", None, datetime(2026, 11, 23, 5)),
    ],
)
def test_since_until_match_oracle(
    client: TestClient,
    rows: list[dict[str, Any]],
    since: str | None,
    until: str | None,
    since_utc: datetime | None,
    until_utc: datetime | None,
) -> None:
    """With since/until (offsets converted to UTC, naive = UTC) every point equals the oracle's."""
    params = {"metric": "edit_ratio", "window": "1h", "group_by": "app", "since": since, "until": until}
    resp = client.get(URL, params={k: v for k, v in params.items() if v is not None})
    assert resp.status_code == 200, resp.text
    expected = oracle(rows, "edit_ratio", 3600, "app", since_utc, until_utc)
    assert expected and len(expected) < len(oracle(rows, "edit_ratio", 3600, "app"))
    assert_same_points(resp.json(), expected)


# --- hand-worked cases --------------------------------------------------------------------------------------


def point(bucket: str, group: str | None, count: int, mean: float, p50: float, p95: float) -> dict[str, Any]:
    """One expected point, as the API serializes it."""
    return {"bucket": bucket, "group": group, "count": count, "mean": mean, "p50": p50, "p95": p95}


def test_window_1d_buckets_start_at_midnight_utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``window=1d``: a row one microsecond before midnight is in the previous day's bucket, midnight in the next."""
    rows = [
        score_row(0, datetime(2026, 11, 24, 23, 59, 59, 999999), 5.0),
        score_row(1, datetime(2026, 11, 25), 1.0),
        score_row(2, datetime(2026, 11, 25, 12), 10.0),
        score_row(3, datetime(2026, 11, 25, 23, 59, 59, 999999), 2.0),
        score_row(4, datetime(2026, 11, 26), 7.0),
    ]
    client = make_client(write_scores(tmp_path, rows), monkeypatch)
    body = client.get(URL, params={"metric": "x", "window": "1d"}).json()
    assert body["count"] == 3
    assert body["data"] == [
        pytest.approx(point("2026-11-24T00:00:00Z", None, 1, 5.0, 5.0, 5.0)),
        pytest.approx(point("2026-11-25T00:00:00Z", None, 3, 13 / 3, 2.0, 9.2)),  # p95: 2 + 0.9 * (10 - 2)
        pytest.approx(point("2026-11-26T00:00:00Z", None, 1, 7.0, 7.0, 7.0)),
    ]


def test_window_1w_buckets_start_on_monday_midnight_utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``window=1w``: weeks run Monday 00:00 UTC to Sunday 23:59:59.999999 (DuckDB's 2000-01-03 origin)."""
    rows = [
        score_row(0, datetime(2026, 11, 22, 23, 59, 59, 999999), 4.0),  # Sunday
        score_row(1, datetime(2026, 11, 23), 1.0),  # Monday
        score_row(2, datetime(2026, 11, 26), 3.0),  # Thursday: a Unix-epoch week would start here
        score_row(3, datetime(2026, 11, 29, 23, 59, 59, 999999), 2.0),  # Sunday
        score_row(4, datetime(2026, 11, 30), 8.0),  # Monday
    ]
    client = make_client(write_scores(tmp_path, rows), monkeypatch)
    body = client.get(URL, params={"metric": "x", "window": "1w"}).json()
    assert body["count"] == 3
    assert body["data"] == [
        pytest.approx(point("2026-11-16T00:00:00Z", None, 1, 4.0, 4.0, 4.0)),
        pytest.approx(point("2026-11-23T00:00:00Z", None, 3, 2.0, 2.0, 2.9)),  # p95: 2 + 0.9 * (3 - 2)
        pytest.approx(point("2026-11-30T00:00:00Z", None, 1, 8.0, 8.0, 8.0)),
    ]


def test_group_by_none_is_one_group_with_null_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``group_by=none`` (and no ``group_by``) pools all groups into one point per bucket with ``"group": null``."""
    rows = [
        score_row(0, datetime(2026, 11, 25, 10, 5), 1.0, app="a1", model="m1"),
        score_row(1, datetime(2026, 11, 25, 10, 6), 2.0, app="a2", model=None),
        score_row(2, datetime(2026, 11, 25, 10, 7), 3.0, app="a2", model="m2"),
    ]
    client = make_client(write_scores(tmp_path, rows), monkeypatch)
    pooled = [pytest.approx(point("2026-11-25T10:00:00Z", None, 3, 2.0, 2.0, 2.9))]
    for params in ({"group_by": "none"}, {}):
        body = client.get(URL, params={"metric": "x", "window": "1h"} | params).json()
        assert body["count"] == 1 and body["data"] == pooled
        assert "group" in body["data"][0] and body["data"][0]["group"] is None
    by_app = client.get(URL, params={"metric": "x", "window": "1h", "group_by": "app"}).json()
    assert by_app["data"] == [
        pytest.approx(point("2026-11-25T10:00:00Z", "a1", 1, 1.0, 1.0, 1.0)),
        pytest.approx(point("2026-11-25T10:00:00Z", "a2", 2, 2.5, 2.5, 2.95)),
    ]
    by_model = client.get(URL, params={"metric": "x", "window": "1h", "group_by": "model"}).json()
    assert [(p["group"], p["count"]) for p in by_model["data"]] == [(None, 1), ("m1", 1), ("m2", 1)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"since": "2026-11-25T10:00:00Z", "until": "2026-11-25T11:00:00Z"},
            [point("2026-11-25T10:00:00Z", None, 3, 3.0, 3.0, 3.9)],
        ),
        (
            {"since": "2026-11-25T11:00:00+01:00", "until": "2026-11-25T12:00:00+01:00"},
            [point("2026-11-25T10:00:00Z", None, 3, 3.0, 3.0, 3.9)],
        ),
        (
            {"since": "2026-11-25T10:00:00", "until": "2026-11-25T11:00:00"},  # naive = UTC
            [point("2026-11-25T10:00:00Z", None, 3, 3.0, 3.0, 3.9)],
        ),
        (
            {"since": "2026-11-25T10:00:00.000001Z", "until": "2026-11-25T11:00:00.000001Z"},
            [point("2026-11-25T10:00:00Z", None, 2, 3.5, 3.5, 3.95), point("2026-11-25T11:00:00Z", None, 1, 5, 5, 5)],
        ),
        ({"until": "2026-11-25T10:00:00Z"}, [point("2026-11-25T09:00:00Z", None, 1, 1.0, 1.0, 1.0)]),
        ({"since": "2026-11-25T11:00:00Z"}, [point("2026-11-25T11:00:00Z", None, 1, 5.0, 5.0, 5.0)]),
    ],
)
def test_since_inclusive_until_exclusive_at_bucket_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict[str, str], expected: list[dict[str, Any]]
) -> None:
    """``since`` keeps a row exactly at it, ``until`` drops a row exactly at it; buckets stay on the grid."""
    rows = [
        score_row(0, datetime(2026, 11, 25, 10) - US, 1.0),
        score_row(1, datetime(2026, 11, 25, 10), 2.0),
        score_row(2, datetime(2026, 11, 25, 10, 30), 3.0),
        score_row(3, datetime(2026, 11, 25, 11) - US, 4.0),
        score_row(4, datetime(2026, 11, 25, 11), 5.0),
    ]
    client = make_client(write_scores(tmp_path, rows), monkeypatch)
    resp = client.get(URL, params={"metric": "x", "window": "1h"} | params)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"data": [pytest.approx(p) for p in expected], "count": len(expected)}


# --- the 10 000-point cap -----------------------------------------------------------------------------------

CAP_START = datetime(2026, 11, 20)


@pytest.fixture(scope="module")
def cap_rows() -> list[dict[str, Any]]:
    """Metric ``at``: 10 000 rows, ``over``: 10 001 rows; row i at ``CAP_START + 30 s * (i // 2)``, app ``a{i % 2}``.

    With ``window=30s`` and ``group_by=app`` every row is its own point; without groups two rows share one.
    """
    return [
        score_row(i, CAP_START + timedelta(seconds=30 * (i // 2)), float(i % 7), metric=metric, app=f"a{i % 2}")
        for metric, n in (("at", 10_000), ("over", 10_001))
        for i in range(n)
    ]


@pytest.fixture
def cap_client(tmp_path: Path, cap_rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """An API client over the cap rows."""
    return make_client(write_scores(tmp_path, cap_rows, partitions=2), monkeypatch)


def test_more_than_10000_points_without_since_until_is_422(cap_client: TestClient) -> None:
    """10 001 (bucket, group) points and no since/until: refused with 422 and a message that says why."""
    resp = cap_client.get(URL, params={"metric": "over", "window": "30s", "group_by": "app"})
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith(TOO_MANY)


def test_exactly_10000_points_without_since_until_is_200(
    cap_client: TestClient, cap_rows: list[dict[str, Any]]
) -> None:
    """Exactly 10 000 points (the cap) are answered in full, each equal to the oracle's."""
    resp = cap_client.get(URL, params={"metric": "at", "window": "30s", "group_by": "app"})
    assert resp.status_code == 200, resp.text
    expected = oracle(cap_rows, "at", 30, "app")
    assert len(expected) == 10_000
    assert_same_points(resp.json(), expected)


@pytest.mark.parametrize(("window", "group_by"), [("30s", "none"), ("1m", "app")])
def test_cap_counts_points_not_rows(
    cap_client: TestClient, cap_rows: list[dict[str, Any]], window: str, group_by: str
) -> None:
    """The same 10 001 rows make fewer points without groups or with a wider window: answered with 200."""
    resp = cap_client.get(URL, params={"metric": "over", "window": window, "group_by": group_by})
    assert resp.status_code == 200, resp.text
    expected = oracle(cap_rows, "over", parse_window(window), group_by)
    assert len(expected) == 5001
    assert_same_points(resp.json(), expected)


def test_since_until_span_over_10000_windows_is_422_before_querying(cap_client: TestClient) -> None:
    """With since and until, a span of exactly 10 000 windows is allowed and one second more is refused."""
    since = CAP_START.replace(tzinfo=UTC)
    params = {"metric": "at", "window": "30s", "since": since.isoformat()}
    ok = cap_client.get(URL, params=params | {"until": (since + timedelta(seconds=300_000)).isoformat()})
    assert ok.status_code == 200 and ok.json()["count"] == 5000
    refused = cap_client.get(URL, params=params | {"until": (since + timedelta(seconds=300_001)).isoformat()})
    assert refused.status_code == 422 and refused.json()["detail"].startswith(TOO_MANY)
    no_data = {"metric": "nope", "window": "1s", "since": "2030-01-01T00:00:00Z", "until": "2030-01-02T00:00:00Z"}
    empty = cap_client.get(URL, params=no_data)  # refused from the span alone, whatever the data holds
    assert empty.status_code == 422 and empty.json()["detail"].startswith(TOO_MANY)


# --- parameters and edge cases ------------------------------------------------------------------------------


def test_health(client: TestClient) -> None:
    """``/health`` answers ok."""
    assert client.get("/health").json()["status"] == "ok"


def test_unknown_metric_is_empty_not_an_error(client: TestClient) -> None:
    """A metric with no rows is an empty answer, not an error."""
    assert client.get(URL, params={"metric": "nope"}).json() == {"data": [], "count": 0}


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
            TOO_MANY,
        ),
    ],
)
def test_invalid_parameters_are_422_with_a_message(client: TestClient, params: dict, message: str) -> None:
    """Each invalid parameter is a 422 whose body names the problem."""
    resp = client.get(URL, params=params)
    assert resp.status_code == 422
    assert message in resp.text


def test_parse_window() -> None:
    """Windows parse to seconds; out-of-range and malformed ones raise with a message naming the input."""
    windows = ("45s", "5m", "2h", "1d", "1w", "366d")
    assert [parse_window(w) for w in windows] == [45, 300, 7200, 86400, 604800, 366 * 86400]
    with pytest.raises(ValueError, match=r"^window must be between 1s and 366d \(got '367d'\)$"):
        parse_window("367d")
    with pytest.raises(ValueError, match=r"^window must look like 30s, 5m, 1h, 1d or 1w \(got '1y'\)$"):
        parse_window("1y")


def test_empty_data_dir_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data folder with nothing written yet answers an empty series."""
    resp = make_client(tmp_path / "nothing-yet", monkeypatch).get(URL, params={"metric": "latency_ms"})
    assert resp.status_code == 200 and resp.json() == {"data": [], "count": 0}
