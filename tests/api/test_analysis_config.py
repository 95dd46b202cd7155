"""The evaluation config in the API: compare's primary and supporting metrics, drift's thresholds and alpha."""

from __future__ import annotations

import random
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings, get_settings
from tests.api.test_compare import URL as COMPARE
from tests.api.test_drift import CUR, REF, _ts, _windows, write
from tests.api.test_drift import URL as DRIFT


def _client(data_dir: Path, config: Path | None) -> TestClient:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=data_dir, eval_config=config)
    return TestClient(app)


def test_compare_leads_with_the_configured_primary_and_supporting_metrics(tmp_path: Path) -> None:
    config = tmp_path / "eval.toml"
    config.write_text(
        '[defaults]\nprimary = "regenerated"\nsupporting = ["latency_ms"]\n'
        '[apps.docs]\nprimary = "edit_ratio"\nsupporting = ["quality", "thumbs_up"]\n'
    )
    client = _client(tmp_path, config)
    params = {"dimension": "model", "a": "m1", "b": "m2"}
    body = client.get(COMPARE, params=params).json()
    assert body["primary"] == "regenerated"
    assert [r["metric"] for r in body["data"]][:3] == ["regenerated", "latency_ms", "thumbs_up"]
    docs = client.get(COMPARE, params={**params, "app": "docs"}).json()
    assert [r["metric"] for r in docs["data"]][:4] == ["edit_ratio", "quality", "thumbs_up", "regenerated"]
    explicit = client.get(COMPARE, params={**params, "metrics": "refreshed,regenerated"}).json()
    assert [r["metric"] for r in explicit["data"]] == ["regenerated", "refreshed"]  # the primary first


def test_drift_uses_the_apps_threshold_and_alpha(tmp_path: Path) -> None:
    rng = random.Random(3)
    rows = [{"ts": _ts(rng, REF), "latency": rng.lognormvariate(6, 0.4), "app": "a"} for _ in range(400)]
    rows += [{"ts": _ts(rng, CUR), "latency": rng.lognormvariate(6.35, 0.4), "app": "a"} for _ in range(300)]
    write(tmp_path, rows)
    (default,) = _client(tmp_path, None).get(DRIFT, params=_windows(signal="latency_ms")).json()["data"]
    assert default["drifted"] and default["threshold"] == 0.2
    config = tmp_path / "eval.toml"
    config.write_text("[apps.a.drift]\npsi_threshold = 5.0\n")
    strict = _client(tmp_path, config).get(DRIFT, params=_windows(signal="latency_ms", app="a")).json()["data"][0]
    assert strict["threshold"] == 5.0 and not strict["drifted"] and strict["statistic"] == default["statistic"]


def test_an_invalid_config_is_a_500_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "eval.toml"
    config.write_text("[defaults.drift]\nalpha = 0.9\n")
    response = _client(tmp_path, config).get(COMPARE, params={"dimension": "model", "a": "m1", "b": "m2"})
    assert response.status_code == 500
    assert "defaults.drift.alpha: must be a number in (0, 0.5), got 0.9" in response.json()["detail"]
    missing = _client(tmp_path, tmp_path / "nope.toml").get(COMPARE, params={"dimension": "model", "a": "m", "b": "n"})
    assert missing.status_code == 500 and "nope.toml" in missing.json()["detail"]
