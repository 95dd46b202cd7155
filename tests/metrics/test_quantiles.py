"""Quantile sketches: rank error within the bound."""

from __future__ import annotations

import random

from metrics.quantiles import QuantileSketch


def test_quantile_sketch_rank_error_within_one_percent() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(6, 0.8) for _ in range(60_000)]
    half = len(values) // 2
    a = QuantileSketch().update_many(values[:half])
    b = QuantileSketch().update_many(values[half:])
    merged = a.merge(b)
    assert merged.count == len(values)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        estimate = merged.get(q)
        assert estimate is not None
        true_rank = sum(v <= estimate for v in ordered) / len(ordered)
        assert abs(true_rank - q) <= 0.01, (q, true_rank)
    assert QuantileSketch.from_text(merged.to_text()).get(0.5) == merged.get(0.5)
    assert QuantileSketch().get(0.5) is None and QuantileSketch().quantiles() is None
    assert QuantileSketch().merge(a) == a and a.merge(QuantileSketch()) == a
