"""The LRU embedding cache: each distinct text reaches the encoder once, least recently used goes first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from streams.embedding.cache import CachedEncoder


class CountingEncoder:
    name = "counting"
    dim = 3

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return np.array([[len(t), hash(t) % 97, 1.0] for t in texts], np.float32)


def test_hits_skip_the_encoder_and_results_match_uncached() -> None:
    inner = CountingEncoder()
    enc = CachedEncoder(inner, maxsize=100)
    texts = ["a", "bb", "a", "ccc", "bb", "é🙂"]
    first = enc.encode(texts)
    assert inner.batches == [["a", "bb", "ccc", "é🙂"]]  # one call, each distinct text once
    assert np.array_equal(first, CountingEncoder().encode(texts))
    second = enc.encode(["ccc", "a", "new"])
    assert inner.batches[-1] == ["new"]
    assert np.array_equal(second, CountingEncoder().encode(["ccc", "a", "new"]))
    assert (enc.hits, enc.misses) == (2 + 2, 4 + 1)


def test_least_recently_used_is_evicted() -> None:
    inner = CountingEncoder()
    enc = CachedEncoder(inner, maxsize=2)
    enc.encode(["a", "b"])
    enc.encode(["a"])  # a is now the most recent
    enc.encode(["c"])  # evicts b
    assert len(enc) == 2
    enc.encode(["a"])
    assert inner.batches[-1] == ["c"]
    enc.encode(["b"])
    assert inner.batches[-1] == ["b"]


def test_cached_vectors_cannot_be_mutated_through_results() -> None:
    enc = CachedEncoder(CountingEncoder(), maxsize=10)
    out = enc.encode(["x"])
    out[0, 0] = 1234
    assert enc.encode(["x"])[0, 0] == 1.0


def test_size_zero_disables_caching_and_negative_is_rejected() -> None:
    inner = CountingEncoder()
    enc = CachedEncoder(inner, maxsize=0)
    enc.encode(["x"])
    enc.encode(["x"])
    assert len(inner.batches) == 2 and len(enc) == 0
    with pytest.raises(ValueError, match=r"^maxsize must be >= 0$"):
        CachedEncoder(inner, maxsize=-1)


def test_empty_input() -> None:
    inner = CountingEncoder()
    assert CachedEncoder(inner).encode([]).shape == (0, 3)
    assert inner.batches == []
