"""Cosine similarities between normalized embeddings, the composite quality score, and compact storage.

All vectors are L2-normalized (as :mod:`streams.embedding.encoder` returns them), so cosine is a dot product.

Example::

    >>> import numpy as np
    >>> out = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    >>> refs = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    >>> max_cosine(out, refs).round(2).tolist()
    [1.0, 0.8]
    >>> max_cosine(out, refs[:0]) is None
    True
    >>> round(composite({"semantic_similarity": 0.8, "novelty": 0.2}, {"semantic_similarity": 3, "novelty": 1}), 6)
    0.65
    >>> round(composite({"semantic_similarity": 0.8, "novelty": None}, {"semantic_similarity": 3, "novelty": 1}), 6)
    0.8
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

INT8_MAX = 127
# Width of all-MiniLM-L6-v2's embeddings, the model whose vectors evalstream stores (sinks' INT8[384] column).
EMBEDDING_DIM = 384


def max_cosine(vectors: np.ndarray, refs: np.ndarray) -> np.ndarray | None:
    """For each row of ``vectors``, its highest cosine to any row of ``refs``; None when there are no refs."""
    if refs.shape[0] == 0:
        return None
    return np.asarray(vectors @ refs.T, dtype=np.float64).max(axis=1)


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of ``a[i]`` with ``b[i]`` for every i."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))


def composite(components: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """Weighted mean of the components that are present (weights renormalized); None when none is.

    A component missing from ``weights`` does not count; negative weights are rejected.
    """
    present: list[tuple[float, float]] = []
    for name, weight in weights.items():
        if weight < 0:
            raise ValueError(f"weight of {name!r} is negative")
        value = components.get(name)
        if value is not None and weight > 0:
            present.append((weight, value))
    weight_sum = sum(w for w, _ in present)
    if weight_sum == 0:
        return None
    # normalize the weights first: weight × value could underflow for tiny weights (found by hypothesis)
    return sum((w / weight_sum) * v for w, v in present)


def to_int8(vectors: np.ndarray) -> np.ndarray:
    """The directions of ``vectors`` as int8, each row scaled so its largest component is ±127.

    Only the direction is kept (cosine is scale-free): 384 bytes per MiniLM embedding, and the cosine between
    a vector and its stored form stays above 0.999 for real embeddings. In DuckDB, compare stored vectors with
    ``array_cosine_similarity(CAST(a AS FLOAT[384]), CAST(b AS FLOAT[384]))``.
    """
    v = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(v).max(axis=-1, keepdims=True)
    scaled = v * (INT8_MAX / np.maximum(peak, 1e-30))
    return np.clip(np.rint(scaled), -INT8_MAX, INT8_MAX).astype(np.int8)


def from_int8(stored: np.ndarray) -> np.ndarray:
    """Unit float32 vectors back from :func:`to_int8`'s output."""
    v = stored.astype(np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norms, 1e-12)
