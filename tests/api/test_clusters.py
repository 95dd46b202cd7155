"""``GET /v1/clusters`` on data written as the sinks write it, with real all-MiniLM-L6-v2 embeddings: three planted
failure classes (refund questions answered badly -> thumbs down, Python error questions -> regenerated, medical
questions -> guardrail) among everyday questions that fail now and then; and the same traffic failing uniformly."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings, get_settings
from metrics.similarity import to_int8
from sinks.catalog import connect
from sinks.parquet import PartitionedParquetWriter
from sinks.schemas import EMBEDDINGS_SCHEMA, EVENTS_SCHEMA, SCORES_SCHEMA
from streams.local.prompts import BACKGROUND_TEMPLATES, topic_question

URL = "/v1/clusters"
START = datetime(2026, 11, 30)
END = START + timedelta(hours=6)
PLANTED = {"refunds": "thumbs_down", "coding": "regenerated", "medical": "guardrail"}
PER_CLASS, BACKGROUND = 150, 1500
VOCABULARY = {
    "refunds": {"refund", "money"},
    "coding": {"python", "error"},
    "medical": {"take", "dose"} | {"ibuprofen", "paracetamol", "aspirin", "antibiotics", "melatonin", "antihistamines"},
}


@pytest.fixture(scope="module")
def traffic() -> list[dict[str, Any]]:
    """Generations with their topic, input and real input embedding, spread over six hours."""
    from streams.embedding.encoder import load_encoder

    rng = random.Random(11)
    rows = [{"topic": t} for t in PLANTED for _ in range(PER_CLASS)]
    rows += [{"topic": rng.choice(sorted(BACKGROUND_TEMPLATES))} for _ in range(BACKGROUND)]
    rng.shuffle(rows)
    for i, row in enumerate(rows):
        row["input"] = topic_question(row["topic"], rng)
        row["ts"] = START + (END - START) * (i + 0.5) / len(rows)
    vectors = load_encoder("onnx").encode([r["input"] for r in rows])
    for row, vector in zip(rows, vectors, strict=True):
        row["vector"] = vector
    return rows


def write(root: Path, rows: list[dict[str, Any]], fails: dict[int, str], embed_every: int = 1) -> None:
    """Generations, one score per failure signal (thumbs up for the rest), embeddings for every ``embed_every``-th
    generation: the three datasets as the worker writes them."""
    events, scores, embeddings = [], [], []
    for i, r in enumerate(rows):
        labels = {"app": "bot", "route": "answer", "model": ["m1", "m2"][i % 2], "prompt_version": "v1"}
        gid, ts = f"g{i}", r["ts"]
        events.append({"event_id": f"e{i}", "type": "generation", "ts": ts, "session_id": f"s{i}",
                       "generation_id": gid, "input": r["input"], "output": f"answer {i}", **labels})  # fmt: skip
        metric, value = {"thumbs_down": ("thumbs_up", 0.0), "regenerated": ("regenerated", 1.0),
                         "guardrail": ("guardrail_flag", 1.0)}.get(fails.get(i, ""), ("thumbs_up", 1.0))  # fmt: skip
        scores.append({"event_id": f"f{i}", "generation_id": gid, "ts": ts + timedelta(seconds=30),
                       "metric": metric, "value": value, **labels})  # fmt: skip
        if i % embed_every == 0:
            vector = to_int8(r["vector"]).tolist()
            embeddings.append({"event_id": f"e{i}", "generation_id": gid, "ts": ts, "encoder": "test",
                               "input_embedding": vector, "output_embedding": vector, "embedded_at": ts,
                               **labels})  # fmt: skip
    for name, schema, data in (("events", EVENTS_SCHEMA, events), ("scores", SCORES_SCHEMA, scores),
                               ("embeddings", EMBEDDINGS_SCHEMA, embeddings)):  # fmt: skip
        PartitionedParquetWriter(root, name, schema, "ts").write("t", 0, 0, len(data), data)


def planted_failures(rows: list[dict[str, Any]], seed: int = 5) -> dict[int, str]:
    """70% of each planted class fails with its signal; 6% of the rest get a thumbs down."""
    rng = random.Random(seed)
    out = {}
    for i, r in enumerate(rows):
        if r["topic"] in PLANTED and rng.random() < 0.7:
            out[i] = PLANTED[r["topic"]]
        elif r["topic"] not in PLANTED and rng.random() < 0.06:
            out[i] = "thumbs_down"
    return out


def client_for(root: Path) -> TestClient:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=root, clusters_cache_s=0)
    return TestClient(app)


def window(shift: timedelta = timedelta(0), **extra: Any) -> dict[str, Any]:
    return {"since": (START + shift).isoformat() + "Z", "until": (END + shift).isoformat() + "Z", **extra}


def members(client: TestClient, cluster_id: str) -> list[dict[str, Any]]:
    body = client.get(f"{URL}/{cluster_id}", params={"limit": 10_000}).json()
    return body["members"]


def test_planted_failure_classes_come_back_as_separate_clusters(tmp_path: Path, traffic: list[dict[str, Any]]) -> None:
    fails = planted_failures(traffic)
    write(tmp_path, traffic, fails)
    client = client_for(tmp_path)
    body = client.get(URL, params=window(app="bot")).json()
    assert body["generations"] == len(traffic) and body["without_embeddings"] == 0
    assert body["failures"] == len(fails)
    assert body["baseline_failure_rate"] == pytest.approx(len(fails) / len(traffic))
    found: dict[str, dict[str, Any]] = {}
    for cluster in body["data"]:
        rows = [int(m["generation_id"][1:]) for m in members(client, cluster["cluster_id"])]
        topics = [traffic[i]["topic"] for i in rows if i in fails]
        top = max(set(topics), key=topics.count)
        if top in PLANTED and top not in found:
            planted = {i for i in fails if traffic[i]["topic"] == top}
            got = {i for i in rows if i in fails}
            hits = len(got & planted)
            found[top] = cluster | {"precision": hits / len(got), "recall": hits / len(planted)}
    assert set(found) == set(PLANTED), [c["label"] for c in body["data"]]
    for topic, cluster in found.items():
        assert min(cluster["precision"], cluster["recall"]) >= 0.7, (topic, cluster["precision"], cluster["recall"])
        assert cluster["lift"] > 1.5 and cluster["p_value"] < 1e-6
        assert max(cluster["signals"], key=cluster["signals"].get) == PLANTED[topic]
        assert VOCABULARY[topic] & set(cluster["label"].replace(",", " ").split()), cluster["label"]
        assert 3 <= len(cluster["examples"]) <= 5
        for example in cluster["examples"]:
            i = int(example["generation_id"][1:])
            assert example["input"] == traffic[i]["input"] and example["signals"] == [fails[i]]
        assert sum(m["generations"] for m in cluster["models"]) == cluster["size"]
        assert sum(m["failures"] for m in cluster["models"]) == cluster["failures"]
        assert cluster["failure_rate"] == pytest.approx(cluster["failures"] / cluster["size"])
        assert cluster["lift"] == pytest.approx(cluster["failure_rate"] / body["baseline_failure_rate"])
        assert START.isoformat() <= cluster["first_seen"][:19] <= cluster["last_seen"][:19] < END.isoformat()
    # the three planted classes rank above everything else (failures × lift)
    assert {c["rank"] for c in found.values()} == {1, 2, 3}
    ranks = [c["failures"] * c["lift"] for c in body["data"]]
    assert ranks == sorted(ranks, reverse=True)

    # the window slides by a few minutes: the same clusters keep their ids
    again = client.get(URL, params=window(timedelta(minutes=5), app="bot")).json()
    assert again["run_id"] != body["run_id"]
    ids = {c["label"]: c["cluster_id"] for c in again["data"]}
    for cluster in found.values():
        assert cluster["cluster_id"] in ids.values()
    by_id = {c["cluster_id"]: c for c in again["data"]}
    for cluster in found.values():
        assert abs(by_id[cluster["cluster_id"]]["failures"] - cluster["failures"]) <= 10

    # SQL: the latest assignment of each generation
    con = connect(tmp_path)
    n, distinct = con.execute("SELECT count(*), count(DISTINCT generation_id) FROM cluster_members").fetchone()
    assert n == distinct > 0
    # a generation both windows hold is the second run's; one of the first five minutes only, the first's
    runs = con.execute(f"""SELECT m.run_id, e.ts >= TIMESTAMP '{START + timedelta(minutes=5)}' AS in_second, count(*)
                           FROM cluster_members m JOIN events e USING (generation_id) GROUP BY ALL""").fetchall()
    assert {(r, s) for r, s, _ in runs} <= {(again["run_id"], True), (body["run_id"], False)}
    stored = con.execute("SELECT sum(size) FROM cluster_runs WHERE run_id = $r", {"r": again["run_id"]}).fetchone()
    assert sum(n for r, _, n in runs if r == again["run_id"]) == stored[0]


def test_uniform_failures_make_no_cluster_with_lift(tmp_path: Path, traffic: list[dict[str, Any]]) -> None:
    rng = random.Random(2)
    fails = {i: rng.choice(list(PLANTED.values())) for i in range(len(traffic)) if rng.random() < 0.12}
    write(tmp_path, traffic, fails)
    body = client_for(tmp_path).get(URL, params=window()).json()
    assert body["failures"] == len(fails)
    assert body["data"] == [] and body["reason"].startswith("no cluster with lift >= 1 and p < 0.01")
    # every region found, whatever its p-value: chance gives some small ones a lift, never a significant one
    everything = client_for(tmp_path).get(URL, params=window(min_lift=0, alpha=1)).json()["data"]
    assert everything and all(c["lift"] <= 1.5 or c["p_value"] >= 0.01 for c in everything)
    assert sum(c["size"] for c in everything if c["lift"] > 1.5) < 0.1 * len(traffic)


def test_signals_choose_what_counts_as_failure(tmp_path: Path, traffic: list[dict[str, Any]]) -> None:
    fails = planted_failures(traffic)
    write(tmp_path, traffic, fails)
    client = client_for(tmp_path)
    body = client.get(URL, params=window(signals="regenerated")).json()
    assert body["signals"] == ["regenerated"]
    assert body["failures"] == sum(1 for s in fails.values() if s == "regenerated")
    assert body["count"] >= 1
    assert all(set(c["signals"]) == {"regenerated"} for c in body["data"])
    top = body["data"][0]
    got = {int(m["generation_id"][1:]) for m in members(client, top["cluster_id"]) if m["failed"]}
    assert {traffic[i]["topic"] for i in got} == {"coding"}


def test_bad_requests_and_thin_windows(tmp_path: Path, traffic: list[dict[str, Any]]) -> None:
    rows = traffic[:400]
    fails = {i: "thumbs_down" for i in range(0, 400, 40)}  # 10 failures
    write(tmp_path, rows, fails, embed_every=2)
    client = client_for(tmp_path)
    assert client.get(URL, params={"signals": "thumbs_down,sideways"}).status_code == 422
    empty = client.get(URL, params=window(signals=" , "))
    assert empty.status_code == 422 and empty.json()["detail"].startswith("signals: must be a non-empty list")
    refused = client.get(URL, params={"since": END.isoformat() + "Z", "until": START.isoformat() + "Z"})
    assert refused.status_code == 422 and refused.json()["detail"] == "`since` must be before `until`"
    body = client.get(URL, params=window()).json()
    assert body["data"] == [] and body["count"] == 0
    assert body["without_embeddings"] == 200 and body["generations"] == 200
    assert body["failures"] == 10  # every 40th row has an embedding (even rows)
    assert body["reason"] == "too few failures to cluster: 10 (at least 20)"
    assert client.get(f"{URL}/c-999").status_code == 404
    assert client.get(f"{URL}/not-an-id").status_code == 422


def test_cluster_detail_pages_its_members(tmp_path: Path, traffic: list[dict[str, Any]]) -> None:
    fails = planted_failures(traffic)
    write(tmp_path, traffic, fails)
    client = client_for(tmp_path)
    top = client.get(URL, params=window()).json()["data"][0]
    everyone = members(client, top["cluster_id"])
    assert len(everyone) == top["size"]
    assert sum(m["failed"] for m in everyone) == top["failures"]
    sims = [m["similarity"] for m in everyone]
    assert sims == sorted(sims, reverse=True)
    page = client.get(f"{URL}/{top['cluster_id']}", params={"limit": 5, "offset": 5, "failed_only": True}).json()
    failed = [m for m in everyone if m["failed"]]
    assert [m["generation_id"] for m in page["members"]] == [m["generation_id"] for m in failed[5:10]]
    assert page["label"] == top["label"] and page["lift"] == pytest.approx(top["lift"])
    assert page["signals"]["counts"] == top["signals"]
    i = int(page["members"][0]["generation_id"][1:])
    assert page["members"][0]["input"] == traffic[i]["input"]


def test_same_request_within_the_cache_time_is_not_clustered_again(
    tmp_path: Path, traffic: list[dict[str, Any]]
) -> None:
    write(tmp_path, traffic, planted_failures(traffic))
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tmp_path, clusters_cache_s=300)
    client = TestClient(app)
    first, second = (client.get(URL, params=window()).json() for _ in range(2))
    assert first["run_id"] == second["run_id"]
    assert len(list((tmp_path / "cluster_runs").glob("dt=*/*.parquet"))) == 1
    other = client.get(URL, params=window(signals="thumbs_down")).json()
    assert other["run_id"] != first["run_id"]


def test_the_command_line_prints_the_same_clusters(
    tmp_path: Path, traffic: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from streams.cli import app
    from streams.settings import get_settings as worker_settings

    write(tmp_path, traffic, planted_failures(traffic))
    config = tmp_path / "eval.toml"
    config.write_text('[defaults.clusters]\nsignals = ["regenerated", "guardrail"]\n')
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EVALSTREAM_EVAL_CONFIG", str(config))
    worker_settings.cache_clear()
    try:
        args = ["clusters", "--since", window()["since"], "--until", window()["until"]]
        as_json = CliRunner().invoke(app, [*args, "--json"])
        assert as_json.exit_code == 0, as_json.output
        answer = json.loads(as_json.stdout)
        assert answer["signals"] == ["regenerated", "guardrail"] and answer["count"] == 2
        shown = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.output
        for cluster in answer["data"]:
            assert cluster["cluster_id"] in shown.stdout and cluster["label"] in shown.stdout
        assert f"{answer['failures']} failures" in shown.stdout
        bad = CliRunner().invoke(app, [*args, "--signals", "sideways"])
        assert bad.exit_code == 2 and "--signals: unknown signal 'sideways'" in bad.stderr
        late = CliRunner().invoke(
            app, ["clusters", "--since", "2026-12-01T00:00:00Z", "--until", "2026-11-30T00:00:00Z"]
        )
        assert late.exit_code == 2 and "--since must be before --until" in late.stderr
    finally:
        worker_settings.cache_clear()


def test_a_long_clustering_does_not_hold_up_other_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The route runs in the server's thread pool: while one clustering is under way, the API still answers."""
    import socket
    import threading

    import httpx
    import uvicorn

    from api.routers import clusters as route

    started, release = threading.Event(), threading.Event()

    def slow(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started.set()
        assert release.wait(30)
        return {"data": [], "count": 0}

    monkeypatch.setattr(route, "find_clusters", slow)
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tmp_path, clusters_cache_s=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        answers: list[httpx.Response] = []
        slow_call = threading.Thread(target=lambda: answers.append(httpx.get(f"{base}{URL}", timeout=60)))
        slow_call.start()
        assert started.wait(30)
        health = httpx.get(f"{base}/health", timeout=10)
        assert health.status_code == 200 and not answers  # answered while the clustering still runs
        release.set()
        slow_call.join(30)
        assert answers and answers[0].json() == {"data": [], "count": 0}
    finally:
        release.set()
        server.should_exit = True


def test_the_answer_cache_keeps_live_answers_only() -> None:
    from api.clustering import ClusterCache

    cache = ClusterCache(ttl_s=0.0)
    calls = []
    for i in range(100):
        assert cache.get(i, lambda i=i: calls.append(i) or {"i": i}) == {"i": i}  # type: ignore[func-returns-value]
    assert calls == list(range(100))  # nothing lives: each computed
    assert len(cache._entries) <= 1 and len(cache._locks) <= 1
    kept = ClusterCache(ttl_s=60.0)
    assert kept.get("k", lambda: {"n": 1}) is kept.get("k", lambda: {"n": 2})
