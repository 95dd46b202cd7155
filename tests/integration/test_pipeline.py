"""The walking skeleton end to end, against a real Kafka broker: publish → worker → Parquet/DuckDB → API."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient
from rapidfuzz.distance import Levenshtein

from api.app import create_app
from api.settings import get_settings as get_api_settings
from metrics.pii import pii_counts
from metrics.similarity import from_int8
from sinks.catalog import connect, landed_counts
from streams.embedding.encoder import load_encoder
from streams.local.launch import spawn_cli, stop, wait_for
from streams.local.sample import OFF_POLICY, generate
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.dead_letters import REASON_HEADER, SOURCE_HEADER
from streams.worker.evalconfig import EXAMPLE_CONFIG, EvalConfig
from tests.integration.traffic import expected_refreshes, publish

pytestmark = pytest.mark.integration

N_EVENTS = 1000
N_MALFORMED = 20


def _read_topic(bootstrap: str, topic: str, partitions: int) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-reader", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        messages = []
        while True:
            msg = consumer.poll(5.0)
            if msg is None:
                return messages
            if msg.error() is None:
                messages.append(msg)
    finally:
        consumer.close()


def test_pipeline_end_to_end(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # batches of 300 events: several batches, each writing more table entries than Faust's default buffer
    settings = settings.model_copy(update={"eval_config": EXAMPLE_CONFIG, "flush_max_events": 300})
    partitions = ensure_topics(settings)
    assert partitions == settings.topic_partitions
    traffic = generate(n_events=N_EVENTS, n_sessions=60, n_malformed=N_MALFORMED, seed=42)
    assert len({e["model"] for e in traffic.events if e["type"] == "generation"}) >= 3
    publish(settings, traffic)

    worker = spawn_cli(["worker"], settings.to_env(), tmp_path / "worker.log")
    try:
        wait_for(
            lambda: landed_counts(settings.data_dir) == (N_EVENTS, N_MALFORMED) or None,
            180,
            what="the worker",
            alive=worker,
        )
        alive = worker.poll() is None
    finally:
        code = stop(worker)
    log = (tmp_path / "worker.log").read_text()
    assert alive, log[-3000:]
    assert code == 0 or code == -signal.SIGTERM, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    # a batch's table writes fit Faust's producer buffer (else: a warning per 100 changelog messages sent)
    assert "producer buffer full" not in log, log[-3000:]

    con = connect(settings.data_dir)
    # Parquet holds exactly the valid events, once each, with their content.
    stored = con.execute("SELECT event_id, type, session_id, ts, _partition, _offset FROM events").fetchall()
    assert len(stored) == N_EVENTS
    assert {r[0] for r in stored} == {e["event_id"] for e in traffic.events}
    assert Counter(r[1] for r in stored) == Counter(e["type"] for e in traffic.events)
    assert len({(r[4], r[5]) for r in stored}) == N_EVENTS  # one row per Kafka message
    regen_extra = con.execute("SELECT DISTINCT extra FROM events WHERE type = 'regenerate'").fetchall()
    assert regen_extra == [('{"ui": "button"}',)]  # unknown fields are kept

    # The DLQ topic holds exactly the malformed messages: original bytes, key and a reason.
    dlq = _read_topic(settings.bootstrap_servers, settings.dlq_topic, partitions)
    assert sorted((m.value() or b"") for m in dlq) == sorted((v or b"") for _, v in traffic.malformed)
    for msg in dlq:
        headers = dict(msg.headers() or [])
        assert headers[REASON_HEADER].decode().strip()
        assert headers[SOURCE_HEADER].decode().startswith(settings.events_topic + ":")
    reasons = [r[0] for r in con.execute("SELECT reason FROM dlq").fetchall()]
    assert len(reasons) == N_MALFORMED and all(reasons)
    assert any(r.startswith("malformed JSON") for r in reasons)
    assert any("thumbs" in r for r in reasons)

    # The join table's changelog holds each generation once (written once, by its batch), with its output.
    changelog = _read_topic(settings.bootstrap_servers, f"{settings.worker_id}-generations-changelog", partitions)
    written = Counter(json.loads(m.key()) for m in changelog)
    generation_events = [e for e in traffic.events if e["type"] == "generation"]
    assert written == Counter(e["generation_id"] for e in generation_events)
    kept = {json.loads(m.key()): (json.loads(m.value()), m.partition()) for m in changelog}
    for e in generation_events:
        value, partition = kept[e["generation_id"]]
        assert value["output"] == e["output"] and value["p"] == partition

    # Edit distances equal rapidfuzz's, for every edit of a known generation.
    outputs = {e["generation_id"]: e["output"] for e in traffic.events if e["type"] == "generation"}
    edits = {e["event_id"]: e for e in traffic.events if e["type"] == "edit"}
    got = dict(con.execute("SELECT event_id, value FROM scores WHERE metric = 'edit_distance'").fetchall())
    assert set(got) == set(edits)
    for event_id, edit in edits.items():
        assert got[event_id] == Levenshtein.distance(outputs[edit["generation_id"]], edit["edited_output"])
    words = dict(con.execute("SELECT event_id, value FROM scores WHERE metric = 'edit_word_distance'").fetchall())
    for event_id, edit in edits.items():
        original, kept = outputs[edit["generation_id"]], edit["edited_output"]
        assert words[event_id] == Levenshtein.distance(original.split(), kept.split())
    ratios = dict(con.execute("SELECT event_id, value FROM scores WHERE metric = 'edit_ratio'").fetchall())
    for event_id, edit in edits.items():
        original, kept = outputs[edit["generation_id"]], edit["edited_output"]
        longest = max(len(original), len(kept))
        assert ratios[event_id] == pytest.approx(got[event_id] / longest if longest else 0.0)

    # PII counts per generation, and novelty against the 32 previous outputs of the same app/route/partition.
    gens = con.execute(
        "SELECT generation_id, input, output, app, route, _partition, error FROM events"
        " WHERE type = 'generation' ORDER BY _partition, _offset"
    ).fetchall()
    pii_in = dict(con.execute("SELECT generation_id, value FROM scores WHERE metric = 'pii_input'").fetchall())
    assert pii_in == {g[0]: float(sum(pii_counts(g[1]).values())) for g in gens}
    assert any(v > 0 for v in pii_in.values())
    got_novelty = dict(con.execute("SELECT generation_id, value FROM scores WHERE metric = 'novelty'").fetchall())
    recent_by_key: dict[tuple, list[str]] = {}
    expected_novelty = {}
    for gid, _, output, app, route, partition, error in gens:
        if error:
            continue
        recent = recent_by_key.setdefault((partition, app, route), [])
        if recent:
            expected_novelty[gid] = min(
                Levenshtein.distance(output, r) / max(len(output), len(r)) if max(len(output), len(r)) else 0.0
                for r in recent
            )
        recent[:] = [*recent, output][-32:]
    assert got_novelty.keys() == expected_novelty.keys()
    assert all(got_novelty[k] == pytest.approx(v) for k, v in expected_novelty.items())

    _check_embedding_scores(con, traffic)

    # Feedback and regenerate scores carry the joined generation's labels.
    gen_model = {e["generation_id"]: e["model"] for e in traffic.events if e["type"] == "generation"}
    thumbs = con.execute("SELECT generation_id, model, value FROM scores WHERE metric = 'thumbs_up'").fetchall()
    feedback = [e for e in traffic.events if e["type"] == "feedback"]
    assert len(thumbs) == len(feedback)
    assert all(model == gen_model[gid] for gid, model, _ in thumbs)
    assert sum(v for *_, v in thumbs) == sum(e["thumbs"] == "up" for e in feedback)
    regenerated = con.execute("SELECT count(*), min(value) FROM scores WHERE metric = 'regenerated'").fetchone()
    assert regenerated == (sum(e["type"] == "regenerate" for e in traffic.events), 1.0)
    refreshed = con.execute("SELECT generation_id, event_id FROM scores WHERE metric = 'refreshed'").fetchall()
    assert set(refreshed) == expected_refreshes(traffic.events) and len(refreshed) == len(set(refreshed)) > 10

    # The API's timeseries equals a direct DuckDB aggregate over the same files.
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(settings.data_dir))
    get_api_settings.cache_clear()
    client = TestClient(create_app())
    resp = client.get("/v1/metrics/timeseries", params={"metric": "latency_ms", "window": "1h", "group_by": "model"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    direct = duckdb.execute(
        f"""
        SELECT strftime(date_trunc('hour', ts), '%Y-%m-%dT%H:%M:%SZ') AS bucket, model, count(*),
               avg(value), quantile_cont(value, 0.5), quantile_cont(value, 0.95)
        FROM read_parquet('{settings.data_dir}/scores/*/*.parquet')
        WHERE metric = 'latency_ms' GROUP BY ALL ORDER BY 1, 2
        """
    ).fetchall()
    assert body["count"] == len(direct) == len(body["data"])
    for point, row in zip(body["data"], direct, strict=True):
        assert (point["bucket"], point["group"], point["count"]) == row[:3]
        assert [point["mean"], point["p50"], point["p95"]] == pytest.approx(list(row[3:]))
    n_generations = sum(e["type"] == "generation" for e in traffic.events)
    assert sum(p["count"] for p in body["data"]) == n_generations


def _check_embedding_scores(con: duckdb.DuckDBPyConnection, traffic) -> None:  # type: ignore[no-untyped-def]
    """Every generation without error has its four families; values agree with an independent computation."""
    gens = {e["generation_id"]: e for e in traffic.events if e["type"] == "generation" and not e.get("error")}
    stored = con.execute("SELECT generation_id, output_embedding, input_embedding, encoder FROM embeddings").fetchall()
    assert sorted(r[0] for r in stored) == sorted(gens)  # one row per generation, none twice
    config = EvalConfig.load(EXAMPLE_CONFIG)
    scores: dict[str, dict[str, float]] = {}
    for gid, metric, value in con.execute(
        "SELECT generation_id, metric, value FROM scores WHERE metric IN ('semantic_similarity', 'relevance', "
        "'quality', 'novelty', 'guardrail_flag') OR metric LIKE 'topic\\_%' ESCAPE '\\' "
        "OR metric LIKE 'guardrail\\_%' ESCAPE '\\'"
    ).fetchall():
        assert metric not in scores.setdefault(gid, {}), (gid, metric)
        scores[gid][metric] = value
    reference = load_encoder("onnx")  # fp32: the worker's int8 must agree within its accuracy bound
    outputs = reference.encode([g["output"] for g in gens.values()])
    inputs = reference.encode([g["input"] for g in gens.values()])
    vectors = {r[0]: r for r in stored}
    deltas: list[float] = []  # int8 (worker) vs fp32 (here) similarity
    for (gid, gen), out_vec, in_vec in zip(gens.items(), outputs, inputs, strict=True):
        s = scores[gid]
        resolved = config.resolve(gen["app"], gen["route"])
        expected = {"semantic_similarity", "relevance", "quality", "guardrail_flag"}
        expected |= {f"topic_{t.name}" for t in resolved.topics} | {f"guardrail_{t.name}" for t in resolved.topics}
        assert expected <= set(s), (gid, sorted(s))
        examples = reference.encode(resolved.examples)
        deltas.append(abs(s["semantic_similarity"] - float((examples @ out_vec).max())))
        deltas.append(abs(s["relevance"] - float(in_vec @ out_vec)))
        weights = resolved.weights
        parts = {
            "semantic_similarity": s["semantic_similarity"],
            "novelty": s.get("novelty"),
            "relevance": s["relevance"],
        }
        used = {k: w for k, w in weights.items() if parts.get(k) is not None}
        assert s["quality"] == pytest.approx(sum(w * parts[k] for k, w in used.items()) / sum(used.values()))  # type: ignore[operator]
        for topic in resolved.topics:
            assert s[f"guardrail_{topic.name}"] == float(s[f"topic_{topic.name}"] >= topic.threshold)
        assert s["guardrail_flag"] == max(s[f"guardrail_{t.name}"] for t in resolved.topics)
        # off-policy outputs of the sample trip a guardrail, the on-policy ones do not
        off_policy = gen["output"] in OFF_POLICY
        if gen["app"] == "support-bot":
            assert s["guardrail_flag"] == float(off_policy), (gen["output"], s)
        elif not off_policy:
            assert s["guardrail_flag"] == 0.0, (gen["output"], s)
        _, out_i8, in_i8, encoder = vectors[gid]
        assert float(from_int8(np.array(out_i8, np.int8)) @ out_vec) > 0.98
        assert float(from_int8(np.array(in_i8, np.int8)) @ in_vec) > 0.98
        assert encoder.startswith("onnx-int8")
    assert any(g["output"] in OFF_POLICY for g in gens.values())
    # int8 noise: embeddings within cosine 0.98 of fp32 move a similarity by a few hundredths at most
    print(f"similarity |int8 - fp32|: mean {np.mean(deltas):.4f}, max {np.max(deltas):.4f}")
    assert np.mean(deltas) < 0.01 and np.max(deltas) < 0.08
