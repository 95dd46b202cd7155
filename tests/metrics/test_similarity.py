"""Pure similarity helpers: max cosine, row-wise cosine, the quality composite and int8 storage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from metrics.similarity import composite, from_int8, max_cosine, rowwise_cosine, to_int8


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float32) + np.float32(1e-3)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


matrices = st.integers(1, 6).flatmap(
    lambda n: arrays(np.float32, (n, 8), elements=st.floats(-1, 1, width=32, allow_subnormal=False))
)


@given(matrices, matrices)
def test_max_cosine_is_the_brute_force_maximum(a: np.ndarray, b: np.ndarray) -> None:
    a, b = _unit(a), _unit(b)
    got = max_cosine(a, b)
    assert got is not None
    for i in range(len(a)):
        expected = max(float(np.dot(a[i].astype(np.float64), b[j].astype(np.float64))) for j in range(len(b)))
        assert got[i] == pytest.approx(expected, abs=1e-5)


def test_max_cosine_without_references_is_none() -> None:
    assert max_cosine(np.ones((3, 4), np.float32), np.zeros((0, 4), np.float32)) is None


def test_rowwise_cosine_pairs_rows_and_checks_shapes() -> None:
    a = np.array([[1, 0], [0, 1]], np.float32)
    b = np.array([[1, 0], [1, 0]], np.float32)
    assert rowwise_cosine(a, b).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="shapes differ"):
        rowwise_cosine(a, b[:1])


@given(
    st.dictionaries(
        st.sampled_from(["semantic_similarity", "novelty", "relevance"]), st.one_of(st.none(), st.floats(-1, 1))
    ),
    st.dictionaries(st.sampled_from(["semantic_similarity", "novelty", "relevance"]), st.floats(0, 10)),
)
@example({"relevance": 0.5}, {"relevance": 5e-324})  # weight × value underflowed to 0 before normalizing
def test_composite_is_a_weighted_mean_of_present_components(components: dict, weights: dict) -> None:
    got = composite(components, weights)
    used = {k: w for k, w in weights.items() if w > 0 and components.get(k) is not None}
    if not used:
        assert got is None
        return
    total = sum(used.values())
    expected = sum((w / total) * components[k] for k, w in used.items())  # weighted mean, without underflow
    assert got == pytest.approx(expected, abs=1e-9)
    present = [components[k] for k in used]
    assert min(present) - 1e-9 <= got <= max(present) + 1e-9  # type: ignore[operator]


def test_composite_rejects_negative_weights() -> None:
    with pytest.raises(ValueError, match="negative"):
        composite({"novelty": 0.5}, {"novelty": -1})


@settings(max_examples=50)
@given(arrays(np.float32, (4, 384), elements=st.floats(-1, 1, width=32, allow_subnormal=False)))
def test_int8_storage_keeps_cosine(raw: np.ndarray) -> None:
    v = _unit(raw)
    stored = to_int8(v)
    assert stored.dtype == np.int8 and stored.shape == v.shape
    back = from_int8(stored)
    cos = np.sum(back * v, axis=1)
    assert float(cos.min()) > 0.995  # adversarial vectors; real embeddings: see the next test
    assert np.allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)
    assert (np.abs(stored).max(axis=1) == 127).all()  # each row uses the full int8 range


def test_int8_storage_of_dense_embedding_like_vectors() -> None:
    rng = np.random.default_rng(3)
    v = rng.standard_normal((1000, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    cos = np.sum(from_int8(to_int8(v)) * v, axis=1)
    assert float(cos.min()) > 0.999
