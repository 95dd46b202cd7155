"""``GET /v1/drift`` on data written as the sinks write it: real embeddings of two styles of text, shifted scores,
a changed model mix, and traffic split at random (no drift)."""

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
from metrics.similarity import to_int8
from sinks.parquet import PartitionedParquetWriter
from sinks.schemas import EMBEDDINGS_SCHEMA, EVENTS_SCHEMA, SCORES_SCHEMA
from streams.local.sample import QUESTIONS, SENTENCES

URL = "/v1/drift"
REF = (datetime(2026, 11, 20), datetime(2026, 11, 27))
CUR = (datetime(2026, 11, 27), datetime(2026, 11, 28))


def _windows(**extra: Any) -> dict[str, Any]:
    return {
        "reference_since": REF[0].isoformat() + "Z", "reference_until": REF[1].isoformat() + "Z",
        "current_since": CUR[0].isoformat() + "Z", "current_until": CUR[1].isoformat() + "Z", **extra,
    }  # fmt: skip


def _ts(rng: random.Random, window: tuple[datetime, datetime]) -> datetime:
    return window[0] + (window[1] - window[0]) * rng.random()


def write(root: Path, rows: list[dict[str, Any]]) -> None:
    """``rows``: generations with ts, app, model, vector (unit, float), latency. Written to all three datasets."""
    events, scores, embeddings = [], [], []
    for i, r in enumerate(rows):
        labels = {"app": r.get("app", "chat"), "route": "answer", "model": r.get("model", "m1"), "prompt_version": "v1"}
        gid = f"g{i}"
        events.append({"event_id": f"e{i}", "type": "generation", "ts": r["ts"], "session_id": f"s{i}",
                       "generation_id": gid, "input": "q", "output": "a", **labels})  # fmt: skip
        if "latency" in r:
            scores.append({"event_id": f"e{i}", "generation_id": gid, "ts": r["ts"], "metric": "latency_ms",
                           "value": r["latency"], **labels})  # fmt: skip
        if "vector" in r:
            vector = to_int8(r["vector"]).tolist()
            embeddings.append({"event_id": f"e{i}", "generation_id": gid, "ts": r["ts"], "encoder": "test",
                               "output_embedding": vector, "embedded_at": r["ts"], **labels})  # fmt: skip
    for name, schema, data in (("events", EVENTS_SCHEMA, events), ("scores", SCORES_SCHEMA, scores),
                               ("embeddings", EMBEDDINGS_SCHEMA, embeddings)):  # fmt: skip
        if data:
            PartitionedParquetWriter(root, name, schema, "ts").write("t", 0, 0, len(data), data)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tmp_path)
    return TestClient(app)


@pytest.fixture(scope="module")
def styles() -> tuple[np.ndarray, np.ndarray]:
    """Real all-MiniLM-L6-v2 embeddings of support answers, and of code snippets (another kind of output)."""
    from streams.embedding.encoder import load_encoder

    rng = random.Random(0)
    support = [" ".join(rng.sample(SENTENCES, 2)) + " " + rng.choice(QUESTIONS) for _ in range(260)]
    code = [f"def step_{i}(rows):\n    return [r * {i} for r in rows if r > {i % 7}]  # batch {i}" for i in range(260)]
    encoder = load_encoder("onnx")
    return encoder.encode(support), encoder.encode(code)


def test_outputs_of_another_kind_drift(
    tmp_path: Path, client: TestClient, styles: tuple[np.ndarray, np.ndarray]
) -> None:
    support, code = styles
    rng = random.Random(1)
    rows = [{"ts": _ts(rng, REF), "vector": v} for v in support[:200]]
    rows += [{"ts": _ts(rng, CUR), "vector": v} for v in code[:150]]
    write(tmp_path, rows)
    body = client.get(URL, params=_windows(signal="output_embedding")).json()
    (point,) = body["data"]
    assert point["method"] == "mmd2_rbf" and point["drifted"] and point["p_value"] < 0.01
    assert (point["n_reference"], point["n_current"], point["sampled"], point["insufficient_data"]) == (
        200,
        150,
        False,
        False,
    )
    assert point["details"]["centroid_distance"] > 0.3 and point["statistic"] > point["threshold"]


def test_the_same_kind_of_output_does_not_drift(
    tmp_path: Path, client: TestClient, styles: tuple[np.ndarray, np.ndarray]
) -> None:
    support, _ = styles
    rng = random.Random(2)
    order = list(range(len(support)))
    rng.shuffle(order)
    rows = [{"ts": _ts(rng, REF if k < 130 else CUR), "vector": support[i]} for k, i in enumerate(order)]
    write(tmp_path, rows)
    (point,) = client.get(URL, params=_windows(signal="output_embedding")).json()["data"]
    assert not point["drifted"] and point["p_value"] > 0.01


def test_random_halves_drift_in_about_alpha_of_seeds(tmp_path: Path) -> None:
    """20 seeds of one traffic split at random into the two windows (synthetic embeddings): at most one drifts."""
    drifted = 0
    centre = np.random.default_rng(0).normal(size=384) * 0.3
    for seed in range(20):
        rng = np.random.default_rng(seed)
        vectors = centre + rng.normal(size=(160, 384))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        r = random.Random(seed)
        root = tmp_path / str(seed)
        write(root, [{"ts": _ts(r, REF if i % 2 else CUR), "vector": v} for i, v in enumerate(vectors)])
        app = create_app()
        app.dependency_overrides[get_settings] = lambda root=root: ApiSettings(data_dir=root)
        (point,) = TestClient(app).get(URL, params=_windows(signal="output_embedding")).json()["data"]
        drifted += point["drifted"]
    assert drifted <= 1


def test_scores_buckets_groups_and_sampling(tmp_path: Path, client: TestClient) -> None:
    rng = random.Random(3)
    rows = [{"ts": _ts(rng, REF), "latency": rng.lognormvariate(6, 0.4), "app": rng.choice(["a", "b"])}
            for _ in range(600)]  # fmt: skip
    # current day: app a gets 2x slower from noon; app b unchanged
    for _ in range(400):
        ts, app = _ts(rng, CUR), rng.choice(["a", "b"])
        slow = app == "a" and ts.hour >= 12
        rows.append({"ts": ts, "app": app, "latency": rng.lognormvariate(6 + (0.7 if slow else 0), 0.4)})
    write(tmp_path, rows)
    body = client.get(URL, params=_windows(signal="latency_ms", window="12h", group_by="app")).json()
    points = {(p["group"], p["bucket"]): p for p in body["data"]}
    assert body["count"] == 4 and set(points) == {
        (g, b) for g in ("a", "b") for b in ("2026-11-27T00:00:00Z", "2026-11-27T12:00:00Z")
    }
    assert points[("a", "2026-11-27T12:00:00Z")]["drifted"] and points[("a", "2026-11-27T12:00:00Z")]["method"] == "psi"
    assert not any(points[k]["drifted"] for k in points if k != ("a", "2026-11-27T12:00:00Z"))
    sampled = client.get(URL, params=_windows(signal="latency_ms", max_samples=100)).json()["data"][0]
    assert sampled["sampled"] and sampled["n_reference"] == 600 and sampled["details"]["tested_reference"] == 100
    again = client.get(URL, params=_windows(signal="latency_ms", max_samples=100)).json()["data"][0]
    assert again == sampled  # the sample is chosen by a hash of the ids: the same every time


def test_a_changed_model_mix_and_a_tiny_window(tmp_path: Path, client: TestClient) -> None:
    rng = random.Random(4)
    rows = [{"ts": _ts(rng, REF), "model": rng.choice(["m1", "m2"])} for _ in range(300)]
    rows += [{"ts": _ts(rng, CUR), "model": "m1" if rng.random() < 0.9 else "m2"} for _ in range(200)]
    rows += [{"ts": datetime(2026, 11, 28, 0, 30), "model": "m2"} for _ in range(5)]
    write(tmp_path, rows)
    (point,) = client.get(URL, params=_windows(signal="model")).json()["data"]
    assert point["method"] == "jensen_shannon" and point["drifted"] and point["details"]["test"] == "chi-square"
    tiny = _windows(signal="model", current_since="2026-11-28T00:00:00Z", current_until="2026-11-28T01:00:00Z")
    (small,) = client.get(URL, params=tiny).json()["data"]
    assert small["insufficient_data"] and not small["drifted"] and small["n_current"] == 5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (_windows(signal="no_such_metric"), "unknown signal 'no_such_metric'"),
        (_windows(signal="regenerated"), "unknown signal 'regenerated'"),
        (_windows(signal="model", current_until="2026-11-26T00:00:00Z"), "`current_since` must be before"),
        ({"signal": "model", "current_since": "2026-11-27T00:00:00Z"}, "are both required"),
        (_windows(signal="model", window="1s"), "more than 10000 buckets"),
        (_windows(signal="model", window="5x"), "window must look like"),
        (_windows(signal="model", group_by="model"), "group_by must differ from the signal"),
        (_windows(signal="model", alpha="0"), "greater than 0"),
    ],
)
def test_bad_parameters_are_422_with_a_message(client: TestClient, params: dict[str, Any], message: str) -> None:
    response = client.get(URL, params=params)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


def test_an_empty_store_is_insufficient_data(client: TestClient) -> None:
    (point,) = client.get(URL, params=_windows(signal="output_embedding", window="1d")).json()["data"]
    assert point["insufficient_data"] and (point["n_reference"], point["n_current"]) == (0, 0)
    assert point["bucket"] == "2026-11-27T00:00:00Z" and timedelta(days=1) == CUR[1] - CUR[0]


def test_the_psi_macro_gives_what_drift_reports(tmp_path: Path, client: TestClient) -> None:
    from metrics.drift import psi
    from sinks.catalog import connect

    rng = random.Random(6)
    rows = [{"ts": _ts(rng, REF), "latency": round(rng.lognormvariate(6, 0.5), 1)} for _ in range(500)]
    rows += [{"ts": _ts(rng, CUR), "latency": round(rng.lognormvariate(6.3, 0.5), 1)} for _ in range(300)]
    write(tmp_path, rows)
    (point,) = client.get(URL, params=_windows(signal="latency_ms")).json()["data"]
    reference = [r["latency"] for r in rows if r["ts"] < REF[1]]
    current = [r["latency"] for r in rows if r["ts"] >= CUR[0]]
    (value,) = connect(tmp_path).execute("SELECT psi FROM psi('latency_ms', $1, $2, $3, $4)", [*REF, *CUR]).fetchone()
    assert value == pytest.approx(point["statistic"]) and value == pytest.approx(psi(reference, current)[0])
