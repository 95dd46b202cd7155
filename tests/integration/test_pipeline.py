"""The walking skeleton end to end, against a real Kafka broker: publish → worker → Parquet/DuckDB → API."""

from __future__ import annotations

import json
import math
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from rapidfuzz.distance import Levenshtein

from api.app import create_app
from api.settings import get_settings as get_api_settings
from metrics.pii import pii_counts
from metrics.similarity import from_int8
from sinks.catalog import connect
from streams.embedding.encoder import load_encoder
from streams.embedding.model import cuda_available
from streams.local.sample import OFF_POLICY, generate
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.dead_letters import REASON_HEADER, SOURCE_HEADER
from streams.worker.evalconfig import EXAMPLE_CONFIG, EvalConfig
from tests.helpers import consume_all
from tests.integration.traffic import expected_refreshes, publish, run_worker_until_landed

pytestmark = pytest.mark.integration

N_EVENTS = 1000
N_MALFORMED = 20


def expected_reason(value: bytes | None) -> str:
    """The reason (or its start) each kind of bad input of the sample traffic must get, worked out by hand."""
    if value is None:
        return "empty message (null value)"
    if value == b"":
        return "empty message (no bytes)"
    if value.startswith(b"\xff"):
        return "not UTF-8: 'utf-8' codec can't decode byte 0xff in position 0"
    if value == b"[1, 2, 3]":
        return "event must be a JSON object, got list"
    try:
        body = json.loads(value)
    except ValueError:
        return "malformed JSON: "  # the truncated kind (the message depends on where the cut falls)
    if body.get("type") == "click":
        return "type: must be one of generation, feedback, edit, regenerate, span, judgement (got 'click')"
    if "session_id" not in body:
        return "session_id: Field required"
    if body.get("ts") == "yesterday":
        return "ts: Input should be a valid datetime or date, input is too short"
    if body.get("thumbs") == "sideways":
        return "thumbs: Input should be 'up' or 'down'"
    if body.get("score") == 1.5:
        return "score: Input should be less than or equal to 1"
    return "ts: Input should have timezone info"


def test_pipeline_end_to_end(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # batches of 300 events: several batches, each writing more table entries than Faust's default buffer
    settings = settings.model_copy(update={"eval_config": EXAMPLE_CONFIG, "flush_max_events": 300})
    partitions = ensure_topics(settings)
    assert partitions == settings.topic_partitions
    traffic = generate(n_events=N_EVENTS, n_sessions=60, n_malformed=N_MALFORMED, seed=42)
    assert len({e["model"] for e in traffic.events if e["type"] == "generation"}) >= 3
    publish(settings, traffic)

    alive, code, log = run_worker_until_landed(settings, N_EVENTS, N_MALFORMED, tmp_path / "worker.log")
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

    # The DLQ topic holds exactly the malformed messages: original key and bytes (a tombstone stays a tombstone,
    # an empty value stays empty), the reason of each kind of bad input, and where it came from.
    dlq = consume_all(settings.bootstrap_servers, settings.dlq_topic, partitions)
    assert Counter((m.key(), m.value()) for m in dlq) == Counter(traffic.malformed)
    reasons = {m.value(): dict(m.headers() or [])[REASON_HEADER].decode() for m in dlq}
    assert {v: r for v, r in reasons.items() if not r.startswith(expected_reason(v))} == {}
    assert len({expected_reason(v) for v in reasons}) == 11  # every kind of bad input the sample makes
    sources = [dict(m.headers() or [])[SOURCE_HEADER].decode() for m in dlq]
    assert len(set(sources)) == N_MALFORMED and all(s.startswith(settings.events_topic + ":") for s in sources)
    stored = con.execute("SELECT key, value, reason FROM dlq").fetchall()
    assert Counter((k, v) for k, v, _ in stored) == Counter(traffic.malformed)
    assert all(reason == reasons[value] for _, value, reason in stored)

    # The join table's changelog holds each generation once (written once, by its batch), with its output.
    changelog = consume_all(settings.bootstrap_servers, f"{settings.worker_id}-generations-changelog", partitions)
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

    # PII counts per generation, and novelty (word level, the default) against the 32 previous outputs of the same
    # app/route/partition.
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
            words = output.split()
            expected_novelty[gid] = min(
                Levenshtein.distance(words, r.split()) / max(len(words), len(r.split())) if words or r.split() else 0.0
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

    # The API's timeseries equals the same aggregate worked out in Python from the published events.
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(settings.data_dir))
    get_api_settings.cache_clear()
    client = TestClient(create_app())
    resp = client.get("/v1/metrics/timeseries", params={"metric": "latency_ms", "window": "1h", "group_by": "model"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    latencies: dict[tuple[str, str], list[float]] = {}
    for e in traffic.events:
        if e["type"] == "generation" and e.get("latency_ms") is not None:
            hour = datetime.fromisoformat(e["ts"]).astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")
            latencies.setdefault((hour, e["model"]), []).append(float(e["latency_ms"]))
    expected = [
        (hour, model, len(v), float(np.mean(v)), float(np.quantile(v, 0.5)), float(np.quantile(v, 0.95)))
        for (hour, model), v in sorted(latencies.items())
    ]
    assert body["count"] == len(expected) == len(body["data"])
    for point, row in zip(body["data"], expected, strict=True):
        assert (point["bucket"], point["group"], point["count"]) == row[:3]
        assert [point["mean"], point["p50"], point["p95"]] == pytest.approx(list(row[3:]))
    n_generations = sum(e["type"] == "generation" for e in traffic.events)
    assert sum(p["count"] for p in body["data"]) == n_generations

    # Failure clusters read the worker's files: every generation counted once, failures as the events say.
    times = sorted(datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) for e in traffic.events)
    window = {"since": times[0].isoformat(), "until": (times[-1] + timedelta(seconds=1)).isoformat(),
              "signals": "thumbs_down,regenerated"}  # fmt: skip
    clusters = client.get("/v1/clusters", params=window)
    assert clusters.status_code == 200, clusters.text
    answer = clusters.json()
    embedded = {row[0] for row in con.execute("SELECT generation_id FROM embeddings").fetchall()}
    assert answer["generations"] == len(embedded) and answer["without_embeddings"] == n_generations - len(embedded)
    latest_thumbs: dict[str, tuple[str, str]] = {}
    for e in traffic.events:
        if e["type"] == "feedback" and e.get("thumbs") and e["ts"] >= latest_thumbs.get(e["generation_id"], ("",))[0]:
            latest_thumbs[e["generation_id"]] = (e["ts"], e["thumbs"])
    regenerated_ids = {e["generation_id"] for e in traffic.events if e["type"] == "regenerate"}
    failed = {g for g, (_, t) in latest_thumbs.items() if t == "down"} | regenerated_ids
    assert answer["failures"] == len(failed & embedded) > 0
    for cluster in answer["data"]:
        assert cluster["failures"] <= cluster["size"] and cluster["lift"] >= 1


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
    deltas: list[float] = []  # the worker's similarity vs fp32's (here)
    cosines: list[float] = []  # the worker's stored embeddings vs fp32's
    # the backend `auto` picks: torch fp16 on a GPU, int8 ONNX on CPU
    expected_encoder = "torch-direct-cuda-fp16" if cuda_available() else "onnx-int8"
    for (gid, gen), out_vec, in_vec in zip(gens.items(), outputs, inputs, strict=True):
        s = scores[gid]
        resolved = config.resolve(gen["app"], gen["route"])
        expected = {"semantic_similarity", "relevance", "quality", "guardrail_flag"}
        expected |= {f"topic_{t.name}" for t in resolved.topics} | {f"guardrail_{t.name}" for t in resolved.topics}
        assert expected <= set(s), (gid, sorted(s))
        examples = reference.encode(resolved.examples)
        delta_semantic = abs(s["semantic_similarity"] - float((examples @ out_vec).max()))
        delta_relevance = abs(s["relevance"] - float(in_vec @ out_vec))
        deltas += [delta_semantic, delta_relevance]
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
        assert encoder.startswith(expected_encoder), encoder
        # The documented accuracy of the worker's embeddings (cosine >= 0.98 to fp32 for every text, >= 0.99 on
        # average), measured on what it stored; a similarity moves by at most the angles its two vectors moved
        # (cosine is 1-Lipschitz in the angle), the stored ones plus their int8 rounding (stored_angle_bound).
        out_cos, in_cos = stored_cosine(out_i8, out_vec), stored_cosine(in_i8, in_vec)
        cosines += [out_cos, in_cos]
        out_angle = math.acos(min(1.0, out_cos)) + stored_angle_bound(out_i8)
        in_angle = math.acos(min(1.0, in_cos)) + stored_angle_bound(in_i8)
        assert delta_relevance <= out_angle + in_angle, (gid, delta_relevance, out_angle, in_angle)
        assert delta_semantic <= out_angle + math.acos(0.98), (gid, delta_semantic, out_angle)
    assert any(g["output"] in OFF_POLICY for g in gens.values())
    print(f"stored vs fp32 cosine: mean {np.mean(cosines):.4f}, min {np.min(cosines):.4f}; "
          f"similarity |worker - fp32|: mean {np.mean(deltas):.4f}, max {np.max(deltas):.4f}")  # fmt: skip
    assert np.mean(cosines) >= 0.99 and np.min(cosines) >= 0.98


def stored_cosine(stored: list[int], reference: np.ndarray) -> float:
    return float(from_int8(np.array(stored, np.int8)) @ reference)


def stored_angle_bound(stored: list[int]) -> float:
    """How far (radians) int8 rounding can have turned a vector: each of its d components moved by at most 0.5
    on a scale where the stored vector has norm ||q||, so the angle is at most asin(0.5 * sqrt(d) / ||q||)."""
    q = np.array(stored, np.float64)
    return math.asin(min(1.0, 0.5 * math.sqrt(q.size) / float(np.linalg.norm(q))))
