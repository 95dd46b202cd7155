"""An LRU cache of embeddings keyed by a hash of the text, and an encoder wrapper that uses it.

Repeated prompts, canned answers and the configuration's reference sentences are encoded once. Keys are
BLAKE2b-128 digests of the UTF-8 text (the text itself is not kept). Values are read-only float32 vectors.

Example::

    >>> import numpy as np
    >>> class Fake:
    ...     name, dim, calls = "fake", 2, 0
    ...     def encode(self, texts):
    ...         Fake.calls += len(texts)
    ...         return np.array([[len(t), 1.0] for t in texts], np.float32)
    >>> enc = CachedEncoder(Fake(), maxsize=10)
    >>> enc.encode(["a", "bb", "a"]).tolist(), Fake.calls
    ([[1.0, 1.0], [2.0, 1.0], [1.0, 1.0]], 2)
    >>> _ = enc.encode(["bb"]); Fake.calls, enc.hits, enc.misses
    (2, 2, 2)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from streams.embedding.model import Encoder


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class CachedEncoder:
    """Wraps an encoder; only texts not seen recently reach it, all misses of one call in one batch."""

    def __init__(self, inner: Encoder, maxsize: int = 20_000) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        keys = [text_key(t) for t in texts]
        todo: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                out[i] = cached
                self.hits += 1
            elif key in todo:
                todo[key].append(i)
                self.hits += 1  # a repeat inside the batch is encoded once
            else:
                todo[key] = [i]
                self.misses += 1
        if todo:
            fresh = self.inner.encode([texts[rows[0]] for rows in todo.values()])
            for (key, rows), vector in zip(todo.items(), fresh, strict=True):
                out[rows] = vector
                if self.maxsize:
                    stored = vector.copy()
                    stored.flags.writeable = False
                    self._cache[key] = stored
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        return out
