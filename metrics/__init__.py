"""Pure computations on plain values and arrays: no Kafka, Faust, DuckDB, FastAPI or model loading.

Levenshtein distances (:mod:`metrics.levenshtein`), edit scores, novelty, PII, rates, quantile sketches,
similarity and refresh rules. Each metric's state is a small frozen value with ``update``, ``merge`` and
``get`` (``None`` when empty).
"""
