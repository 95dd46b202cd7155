"""``GET /metrics`` of the API: valid Prometheus text whose request counters and latency histogram follow the
traffic, by route template and status (refused requests included), one registry per app."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.settings import get_settings as api_settings


def samples(client: TestClient, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of ``/metrics`` by (name, sorted labels), parsed by prometheus_client's own parser."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def requests(found: dict[tuple[str, tuple], float], route: str, status: str) -> float:
    key = ("evalstream_api_requests_total", (("method", "GET"), ("route", route), ("status", status)))
    return found.get(key, 0.0)


def test_request_counters_follow_the_traffic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(tmp_path))
    api_settings.cache_clear()
    client = TestClient(create_app())
    before = samples(client)
    for _ in range(3):
        assert client.get("/v1/pipeline").status_code == 200
    assert client.get("/v1/alerts/does-not-exist").status_code == 404
    assert client.get("/v1/metrics/timeseries", params={"metric": "x", "window": "nonsense"}).status_code == 422
    assert client.get("/health").status_code == 200
    after = samples(client)
    assert requests(after, "/v1/pipeline", "200") - requests(before, "/v1/pipeline", "200") == 3
    assert requests(after, "/v1/alerts/{alert_id}", "404") == 1  # the template, never the id
    assert requests(after, "/v1/metrics/timeseries", "422") == 1
    assert requests(after, "/health", "200") == 1
    assert requests(after, "/metrics", "200") == 1  # the first scrape
    latency = ("evalstream_api_request_duration_seconds_count", (("method", "GET"), ("route", "/v1/pipeline")))
    assert after[latency] == 3
    le_inf = ("evalstream_api_request_duration_seconds_bucket", (("le", "+Inf"), ("method", "GET"),
                                                                  ("route", "/v1/pipeline")))  # fmt: skip
    assert after[le_inf] == 3
    assert not any("does-not-exist" in str(labels) for _, labels in after)
    assert client.request("BREW", "/v1/pipeline").status_code == 405  # any method token reaches the app
    methods = {dict(labels)["method"] for name, labels in samples(client) if name == "evalstream_api_requests_total"}
    assert methods == {"GET", "other"}  # labelled "other", never by the token a client made up

    # a second app in the same process counts on its own
    other = TestClient(create_app())
    assert requests(samples(other), "/v1/pipeline", "200") == 0


def test_refused_requests_are_counted_and_metrics_need_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EVALSTREAM_API_KEYS", "scrape-key-3c9d0e1f")
    api_settings.cache_clear()
    client = TestClient(create_app())
    assert client.get("/metrics").status_code == 401
    assert client.get("/v1/pipeline").status_code == 401
    found = samples(client, {"Authorization": "Bearer scrape-key-3c9d0e1f"})
    assert requests(found, "/v1/pipeline", "401") == 1
    assert requests(found, "/metrics", "401") == 1
