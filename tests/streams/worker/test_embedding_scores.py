"""The embedding scores of a generation: similarity to examples, banned topics, relevance, quality, rows."""

from __future__ import annotations

import json

import pytest

from metrics.similarity import from_int8
from streams.embedding.backends import OnnxEncoder
from streams.embedding.cache import CachedEncoder
from streams.sdk.schema import GenerationEvent, parse_event
from streams.worker.embedding_scores import EmbeddingScorer
from streams.worker.evalconfig import ReferenceBook

CONFIG = """
[apps.clinic-bot]
examples = [
    "You can book, move or cancel an appointment from the Appointments tab.",
    "Our opening hours are 8 am to 6 pm, Monday to Friday.",
]
[apps.clinic-bot.topics.medical_advice]
threshold = 0.5
exemplars = [
    "You should take ibuprofen or paracetamol for the pain.",
    "That sounds like an infection; take antibiotics for a week.",
    "You don't need to see a doctor, just double your dose.",
]
[apps.clinic-bot.topics.legal_advice]
threshold = 0.5
exemplars = ["You can't be sued for that, so ignore the letter from the court."]
"""


def _generation(output: str, input: str = "Can I see a doctor tomorrow?", app: str = "clinic-bot") -> GenerationEvent:
    body = {
        "type": "generation", "event_id": "e-" + str(abs(hash(output))), "ts": "2026-11-25T10:00:00Z",
        "session_id": "s", "app": app, "generation_id": "g-" + str(abs(hash(output))), "route": "answer",
        "model": "m", "prompt_version": "v1", "input": input, "output": output,
    }  # fmt: skip
    event = parse_event(json.dumps(body).encode())
    assert isinstance(event, GenerationEvent)
    return event


@pytest.fixture(scope="module")
def scorer(onnx_int8: OnnxEncoder, tmp_path_factory: pytest.TempPathFactory) -> EmbeddingScorer:
    path = tmp_path_factory.mktemp("cfg") / "eval.toml"
    path.write_text(CONFIG)
    cached = CachedEncoder(onnx_int8)
    return EmbeddingScorer(cached, ReferenceBook(path, cached))


def _scores(scorer: EmbeddingScorer, gen: GenerationEvent, novelty: float | None = 0.4) -> dict[str, float]:
    (result,) = scorer.score([(gen, novelty)])
    return {s.metric: s.value for s in result.scores}


def test_medical_advice_trips_the_medical_topic(scorer: EmbeddingScorer) -> None:
    s = _scores(scorer, _generation("For your back pain take 800 mg of ibuprofen twice a day, no need for a doctor."))
    assert s["topic_medical_advice"] >= 0.5
    assert s["guardrail_medical_advice"] == 1.0
    assert s["guardrail_legal_advice"] == 0.0
    assert s["guardrail_flag"] == 1.0


def test_an_unrelated_answer_trips_nothing(scorer: EmbeddingScorer) -> None:
    s = _scores(scorer, _generation("You can move your appointment to tomorrow at 10 am from the Appointments tab."))
    assert s["topic_medical_advice"] < 0.5 and s["topic_legal_advice"] < 0.5
    assert s["guardrail_medical_advice"] == s["guardrail_legal_advice"] == s["guardrail_flag"] == 0.0


def test_similarity_relevance_and_quality(scorer: EmbeddingScorer) -> None:
    good = _scores(scorer, _generation("You can book or cancel appointments in the Appointments tab."), novelty=0.4)
    off = _scores(scorer, _generation("The Eiffel Tower is 330 metres tall and was finished in 1889."), novelty=0.4)
    assert good["semantic_similarity"] > 0.7 > off["semantic_similarity"]
    assert good["relevance"] > off["relevance"]
    for s in (good, off):
        assert s["quality"] == pytest.approx(0.7 * s["semantic_similarity"] + 0.3 * 0.4)  # default weights
    without_novelty = _scores(scorer, _generation("You can book or cancel appointments in the Appointments tab."), None)
    assert without_novelty["quality"] == pytest.approx(good["semantic_similarity"])


def test_unconfigured_app_gets_relevance_and_no_guardrails(scorer: EmbeddingScorer) -> None:
    s = _scores(scorer, _generation("Paris is the capital of France.", "What is the capital of France?", app="geo"))
    assert set(s) == {"relevance", "quality"}
    assert s["relevance"] > 0.5
    assert s["quality"] == pytest.approx(0.4)  # only novelty is present among the default weights
    s = _scores(scorer, _generation("Paris.", "", app="geo"), novelty=None)
    assert s == {}  # no input, no examples, no novelty: nothing to say


def test_embedding_rows_hold_the_vectors(scorer: EmbeddingScorer, onnx_int8: OnnxEncoder) -> None:
    gens = [_generation("Our opening hours are 8 am to 6 pm."), _generation("Bring your insurance card.", "")]
    results = scorer.score([(g, None) for g in gens])
    expected = onnx_int8.encode([g.output for g in gens])
    for gen, result, vector in zip(gens, results, expected, strict=True):
        row = result.row
        assert row["generation_id"] == gen.generation_id and row["encoder"] == onnx_int8.name
        assert float(from_int8(row["output_embedding"]) @ vector) > 0.999
    assert results[0].row["input_embedding"] is not None and results[1].row["input_embedding"] is None
