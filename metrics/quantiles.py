"""Mergeable quantile sketch (Apache DataSketches KLL) for latency, tokens and cost distributions.

With the default ``k = 400`` the normalized rank error is about 0.68% (99% confidence), inside the 1% asked.
The state is immutable: it holds the serialized sketch, so it can be stored in a Faust table as is; batch
values with :meth:`QuantileSketch.update_many` (one deserialize/serialize per batch).

Example::

    >>> s = QuantileSketch().update_many([10.0, 20.0, 30.0, 40.0])
    >>> s.count, s.get(0.5)
    (4, 30.0)
    >>> QuantileSketch().get(0.5) is None
    True
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from datasketches import kll_doubles_sketch

DEFAULT_K = 400


@dataclass(frozen=True, slots=True)
class QuantileSketch:
    k: int = DEFAULT_K
    blob: bytes = b""

    def _sketch(self) -> kll_doubles_sketch:
        return kll_doubles_sketch.deserialize(self.blob) if self.blob else kll_doubles_sketch(self.k)

    @property
    def count(self) -> int:
        return int(self._sketch().n) if self.blob else 0

    def update(self, value: float) -> QuantileSketch:
        return self.update_many([value])

    def update_many(self, values: Iterable[float]) -> QuantileSketch:
        sketch = self._sketch()
        for v in values:
            if v == v:  # NaN carries no rank
                sketch.update(float(v))
        return QuantileSketch(self.k, bytes(sketch.serialize()))

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        if not other.blob:
            return self
        if not self.blob:
            return other
        sketch = self._sketch()
        sketch.merge(other._sketch())
        return QuantileSketch(self.k, bytes(sketch.serialize()))

    def get(self, q: float) -> float | None:
        """The ``q``-quantile (0..1), or None when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be within [0, 1]")
        if not self.blob:
            return None
        return float(self._sketch().get_quantile(q))

    def quantiles(self, qs: Iterable[float] = (0.5, 0.95, 0.99)) -> dict[float, float] | None:
        if not self.blob:
            return None
        sketch = self._sketch()
        return {q: float(sketch.get_quantile(q)) for q in qs}

    def rank(self, value: float) -> float | None:
        """Fraction of values <= ``value`` (None when empty)."""
        return float(self._sketch().get_rank(value, inclusive=True)) if self.blob else None

    def to_text(self) -> str:
        return f"{self.k}:{base64.b64encode(self.blob).decode()}"

    @classmethod
    def from_text(cls, text: str) -> QuantileSketch:
        k, _, blob = text.partition(":")
        return cls(int(k), base64.b64decode(blob))
