"""``GET /v1/compare`` on synthetic traffic with a known answer, written as the sinks write it."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings, get_settings
from metrics.stats import compare_means, compare_rates
from sinks.catalog import connect
from sinks.parquet import PartitionedParquetWriter
from sinks.schemas import EVENTS_SCHEMA, SCORES_SCHEMA

URL = "/v1/compare"
T0 = datetime(2026, 11, 25, 10, 0)


class Traffic:
    """Generations and the scores the worker would have written for them (labels copied from the generation)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []
        self.n = 0

    def generation(self, model: str, latency: float | None = None, route: str = "answer") -> dict[str, Any]:
        self.n += 1
        gen = {
            "event_id": f"e{self.n}", "type": "generation", "ts": T0 + timedelta(seconds=self.n),
            "session_id": f"s{self.n}", "app": "chat", "generation_id": f"g{self.n}", "route": route,
            "model": model, "prompt_version": "v1", "input": "q", "output": "a", "latency_ms": latency,
        }  # fmt: skip
        self.events.append(gen)
        if latency is not None:
            self.score(gen, "latency_ms", latency)
        return gen

    def score(self, gen: dict[str, Any], metric: str, value: float, later_s: int = 30) -> None:
        self.n += 1
        self.scores.append({
            "event_id": f"e{self.n}", "generation_id": gen["generation_id"],
            "ts": gen["ts"] + timedelta(seconds=later_s),
            **{k: gen[k] for k in ("app", "route", "model", "prompt_version")},
            "metric": metric, "value": float(value),
        })  # fmt: skip

    def write(self, data_dir: Path) -> None:
        PartitionedParquetWriter(data_dir, "events", EVENTS_SCHEMA, "ts").write(
            "t", 0, 0, len(self.events), self.events
        )
        PartitionedParquetWriter(data_dir, "scores", SCORES_SCHEMA, "ts").write(
            "t", 0, 0, len(self.scores), self.scores
        )


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tmp_path)
    return TestClient(app)


def _row(body: dict[str, Any], metric: str) -> dict[str, Any]:
    (row,) = [r for r in body["data"] if r["metric"] == metric]
    return row


def test_a_planted_thumbs_up_difference(tmp_path: Path, client: TestClient) -> None:
    rng = random.Random(1)
    traffic = Traffic()
    ups = {"model-x": 0, "model-y": 0}
    for model, p in (("model-x", 0.30), ("model-y", 0.70)):
        for _ in range(500):
            gen = traffic.generation(model)
            up = rng.random() < p
            ups[model] += up
            traffic.score(gen, "thumbs_up", up)
    traffic.write(tmp_path)
    body = client.get(URL, params={"dimension": "model", "a": "model-x", "b": "model-y", "metrics": "thumbs_up"}).json()
    assert body["primary"] == "thumbs_up" and body["count"] == 1
    row = _row(body, "thumbs_up")
    assert row["kind"] == "rate" and row["test"] == "two-proportion z"
    assert (row["a"]["n"], row["b"]["n"]) == (500, 500)
    assert row["a"]["value"] == ups["model-x"] / 500 and row["b"]["value"] == ups["model-y"] / 500
    assert row["significant"] and row["p_value"] < 0.001 and row["warning"] is None
    assert row["difference"] == pytest.approx((ups["model-y"] - ups["model-x"]) / 500)
    assert row["difference_ci_low"] < 0.40 < row["difference_ci_high"]
    expected = compare_rates(ups["model-x"], 500, ups["model-y"], 500)
    assert row["p_value"] == pytest.approx(expected.p_value)


def test_regenerate_rates_count_every_generation_of_the_cohort(tmp_path: Path, client: TestClient) -> None:
    """The scores hold only the 1s (and a generation regenerated twice has two): the denominator is the cohort's
    generations, and each regenerated generation counts once."""
    traffic = Traffic()
    for model, total, regenerated in (("model-x", 200, 20), ("model-y", 300, 90)):
        for i in range(total):
            gen = traffic.generation(model)
            if i < regenerated:
                traffic.score(gen, "regenerated", 1, later_s=10)
                if i % 2:
                    traffic.score(gen, "regenerated", 1, later_s=20)  # asked twice
    traffic.write(tmp_path)
    params = {"dimension": "model", "a": "model-x", "b": "model-y", "metrics": "regenerated,refreshed"}
    body = client.get(URL, params=params).json()
    regen = _row(body, "regenerated")
    assert (regen["a"]["n"], regen["a"]["value"]) == (200, 0.1)
    assert (regen["b"]["n"], regen["b"]["value"]) == (300, 0.3)
    assert regen["significant"] and regen["difference"] == pytest.approx(0.2)
    refreshed = _row(body, "refreshed")  # never refreshed: 0 of every generation, nothing to tell apart
    assert (refreshed["a"]["n"], refreshed["a"]["value"], refreshed["p_value"]) == (200, 0.0, 1.0)
    assert not refreshed["significant"]

    # the same numbers in SQL, from the generations view
    con = connect(tmp_path)
    sql = "SELECT model, count(*), sum(regenerated), avg(regenerated) FROM generations GROUP BY model ORDER BY model"
    assert con.execute(sql).fetchall() == [("model-x", 200, 20, 0.1), ("model-y", 300, 90, 0.3)]


def test_means_with_p95_and_filters(tmp_path: Path, client: TestClient) -> None:
    rng = np.random.default_rng(3)
    traffic = Traffic()
    latencies: dict[str, list[float]] = {"model-x": [], "model-y": []}
    for model, mu in (("model-x", 6.0), ("model-y", 6.3)):
        for value in rng.lognormal(mu, 0.5, 120):
            traffic.generation(model, latency=float(value))
            latencies[model].append(float(value))
        traffic.generation(model, latency=1e6, route="other")  # filtered out below
    traffic.write(tmp_path)
    params = {"dimension": "model", "a": "model-x", "b": "model-y", "metrics": "latency_ms", "route": "answer"}
    row = _row(client.get(URL, params=params).json(), "latency_ms")
    expected = compare_means(latencies["model-x"], latencies["model-y"], with_p95=True)
    assert row["kind"] == "mean" and row["test"] == "Welch t"
    assert row["a"]["n"] == 120 and row["a"]["value"] == pytest.approx(expected.a.value)
    assert row["a"]["p95"] == pytest.approx(expected.a.p95) and row["b"]["p95_ci_high"] == pytest.approx(
        expected.b.p95_ci_high
    )
    assert row["p_value"] == pytest.approx(expected.p_value) and row["significant"]
    assert row["p_value_mann_whitney"] == pytest.approx(expected.p_value_mann_whitney)
    until = (T0 + timedelta(seconds=5)).isoformat() + "Z"  # a window with almost nothing in it
    tiny = _row(client.get(URL, params={**params, "until": until}).json(), "latency_ms")
    assert tiny["a"]["n"] < 30 and not tiny["significant"] and "under the minimum of 30" in tiny["warning"]


def test_default_metrics_come_in_order_on_an_empty_store(client: TestClient) -> None:
    body = client.get(URL, params={"dimension": "prompt_version", "a": "v1", "b": "v2"}).json()
    assert [r["metric"] for r in body["data"]] == [
        "thumbs_up", "regenerated", "refreshed", "edit_ratio", "quality", "latency_ms", "cost_usd",
    ]  # fmt: skip
    assert body["primary"] == "thumbs_up"
    assert all(r["a"]["n"] == 0 and not r["significant"] for r in body["data"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dimension": "model", "a": "x", "b": "x"}, "a and b must differ"),
        (
            {"dimension": "colour", "a": "x", "b": "y"},
            "Input should be 'model', 'prompt_version', 'index_version', 'route' or 'app'",
        ),
        ({"dimension": "model", "a": "x", "b": "y", "metrics": "no_such_metric"}, "unknown metric(s), never scored"),
        ({"dimension": "model", "a": "x", "b": "y", "metrics": " , "}, "name at least one metric"),
        ({"dimension": "model", "a": "x", "b": "y", "since": "2026-11-26T00:00:00Z", "until": "2026-11-25T00:00:00Z"},
         "`since` must be before `until`"),
        ({"dimension": "model", "a": "x", "b": "y", "alpha": "0.7"}, "less than 0.5"),
        ({"dimension": "model", "a": "", "b": "y"}, "at least 1 character"),
    ],
)  # fmt: skip
def test_bad_parameters_are_422_with_a_message(client: TestClient, params: dict[str, str], message: str) -> None:
    response = client.get(URL, params=params)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


def test_the_api_and_the_sql_macros_give_the_same_numbers(tmp_path: Path, client: TestClient) -> None:
    rng = random.Random(5)
    traffic = Traffic()
    for model, p in (("model-x", 0.4), ("model-y", 0.5)):
        for _ in range(300):
            traffic.score(traffic.generation(model), "thumbs_up", rng.random() < p)
    traffic.write(tmp_path)
    body = client.get(URL, params={"dimension": "model", "a": "model-x", "b": "model-y", "metrics": "thumbs_up"})
    row = _row(body.json(), "thumbs_up")
    sql = """SELECT model, count(*) AS n, avg(value),
                    wilson_low(sum(value), count(*)), wilson_high(sum(value), count(*))
             FROM scores WHERE metric = 'thumbs_up' GROUP BY model ORDER BY model"""
    (x, y) = connect(tmp_path).execute(sql).fetchall()
    for side, (_, n, value, low, high) in (("a", x), ("b", y)):
        assert row[side]["n"] == n and row[side]["value"] == pytest.approx(value)
        assert (row[side]["ci_low"], row[side]["ci_high"]) == pytest.approx((low, high), abs=1e-12)


def test_large_cohorts_test_mann_whitney_on_a_repeatable_sample(
    tmp_path: Path, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.routers.compare as compare_router

    monkeypatch.setattr(compare_router, "MANN_WHITNEY_CAP", 60)
    rng = np.random.default_rng(8)
    traffic = Traffic()
    values = {"model-x": rng.lognormal(6.0, 0.5, 200), "model-y": rng.lognormal(6.2, 0.5, 200)}
    for model, latencies in values.items():
        for v in latencies:
            traffic.generation(model, latency=float(v))
    traffic.write(tmp_path)
    params = {"dimension": "model", "a": "model-x", "b": "model-y", "metrics": "latency_ms"}
    row = _row(client.get(URL, params=params).json(), "latency_ms")
    full = compare_means(values["model-x"], values["model-y"], with_p95=True)
    assert row["a"]["n"] == 200 and row["p_value"] == pytest.approx(full.p_value)  # Welch on everything
    assert row["a"]["p95_ci_low"] == pytest.approx(full.a.p95_ci_low)
    assert row["p_value_mann_whitney"] != pytest.approx(full.p_value_mann_whitney)  # on ~50 of 200 per side
    assert _row(client.get(URL, params=params).json(), "latency_ms") == row  # the same sample every time
