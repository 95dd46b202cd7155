"""The live aggregate of one metric in one tumbling event-time window, and drift between two such windows.

A :class:`WindowAggregate` is what an alerting worker keeps per (metric, labels, window): the count, the sum,
min and max, a KLL quantile sketch (:mod:`metrics.quantiles`) and the number of values that came after their
window had closed (counted, not aggregated). It is immutable and mergeable, so partitions, batches and restarts
combine in any order.

The sum is kept as Shewchuk's non-overlapping partial sums (the ``msum`` recipe behind :func:`math.fsum`): each
addition is exact, so after any number of updates and merges :attr:`WindowAggregate.sum` is
``math.fsum(all values)`` to the last bit, where a running float sum would drift with the merge order (1e16 + 1 -
1e16 is 0 or 1 depending on it). NaN and ±inf are skipped: they have no rank and would poison the sum. A sum
whose partials leave the float range raises :class:`OverflowError`, as :func:`math.fsum` does.

:func:`sketch_drift` compares two aggregates' sketches the way :func:`metrics.drift.numeric_drift` compares raw
samples (PSI over the reference's deciles, the two-sample Kolmogorov-Smirnov test), without the raw values. KLL
compaction is randomized: past k values, the same inputs can give slightly different quantiles (within the rank
error), and so drift statistics, from one run to the next; count, sum, min and max are always exact.

Example::

    >>> a = WindowAggregate().update_many([1e16, 1.0, float("nan")])
    >>> b = WindowAggregate().update_many([-1e16, 2.0]).add_late()
    >>> m = a.merge(b)
    >>> m.count, m.sum, m.value("max"), m.late
    (4, 3.0, 1e+16, 1)
    >>> WindowAggregate.from_dict(m.to_dict()) == m
    True
    >>> WindowAggregate().get() is None, WindowAggregate().value("count")
    (True, 0.0)
    >>> window_start(1_700_000_123.5, parse_duration("5m")), parse_duration("2h")
    (1700000100, 7200)
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from datasketches import kll_doubles_sketch
from scipy import stats

from metrics.drift import DEFAULT_ALPHA, DEFAULT_MIN_N, PSI_THRESHOLD
from metrics.quantiles import QuantileSketch

AGGREGATIONS = ("mean", "rate", "p50", "p95", "p99", "count", "sum", "min", "max")
PSI_BINS = 10
PSI_EPS = 1e-4  # as metrics.drift.psi: an empty bin counts as this share (its logarithm is otherwise infinite)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_EMPTY = QuantileSketch()
_KEYS = {"n", "s", "lo", "hi", "q", "late"}
_MAX = 1.7976931348623157e308  # the largest float: a bigger int, inf or NaN is not a finite float


class WindowValue(NamedTuple):
    count: int  # type: ignore[assignment]  # the field shadows tuple.count on purpose: it is the window's count
    sum: float
    mean: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float
    late: int


class SketchDrift(NamedTuple):
    psi: float
    ks_d: float
    p_value: float
    drifted: bool
    n_ref: int
    n_cur: int


def _add_partial(partials: list[float], x: float) -> None:
    """Add ``x`` to ``partials`` in place, exactly (Shewchuk; the partials stay non-overlapping, smallest first)."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        if math.isinf(hi):
            raise OverflowError("the window sum leaves the float range")
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


@dataclass(frozen=True, slots=True)
class WindowAggregate:
    """Count, exact sum, min, max, quantile sketch and late count of one metric in one window."""

    count: int = 0
    partials: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    sketch: QuantileSketch = _EMPTY
    late: int = 0

    def update_many(self, values: Iterable[float]) -> WindowAggregate:
        """Add the finite ``values`` (NaN and ±inf are skipped); one sketch round trip per call."""
        finite = [x for x in map(float, values) if math.isfinite(x)]
        if not finite:
            return self
        partials = list(self.partials)
        for x in finite:
            _add_partial(partials, x)
        low, high = min(finite), max(finite)
        return WindowAggregate(
            self.count + len(finite),
            tuple(partials),
            low if self.low is None else min(self.low, low),
            high if self.high is None else max(self.high, high),
            self.sketch.update_many(finite),
            self.late,
        )

    def add_late(self, n: int = 1) -> WindowAggregate:
        """Count ``n`` values that arrived after this window had closed."""
        if n < 0:
            raise ValueError("n must be >= 0")
        return WindowAggregate(self.count, self.partials, self.low, self.high, self.sketch, self.late + n)

    def merge(self, other: WindowAggregate) -> WindowAggregate:
        partials = list(self.partials)
        for x in other.partials:
            _add_partial(partials, x)
        lows = [v for v in (self.low, other.low) if v is not None]
        highs = [v for v in (self.high, other.high) if v is not None]
        return WindowAggregate(
            self.count + other.count,
            tuple(partials),
            min(lows) if lows else None,
            max(highs) if highs else None,
            self.sketch.merge(other.sketch),
            self.late + other.late,
        )

    @property
    def sum(self) -> float:
        """The correctly rounded sum of every value added: ``math.fsum`` of them all."""
        return math.fsum(self.partials)

    def get(self) -> WindowValue | None:
        if self.count == 0 or self.low is None or self.high is None:
            return None
        qs = self.sketch.quantiles((0.5, 0.95, 0.99))
        assert qs is not None
        total = self.sum
        return WindowValue(
            self.count, total, total / self.count, self.low, self.high, qs[0.5], qs[0.95], qs[0.99], self.late
        )

    def value(self, aggregation: str) -> float | None:
        """One number of the window, by name (see ``AGGREGATIONS``); ``"rate"`` is the mean of a 0/1 metric.
        None when the window is empty, except ``"count"`` (0.0)."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r} (known: {', '.join(AGGREGATIONS)})")
        if aggregation == "count":
            return float(self.count)
        v = self.get()
        if v is None:
            return None
        named = {"mean": v.mean, "rate": v.mean, "sum": v.sum, "min": v.min, "max": v.max}
        return named[aggregation] if aggregation in named else float(getattr(v, aggregation))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, compact: ``n`` count, ``s`` partials, ``lo``/``hi``, ``q`` the sketch as text, ``late``."""
        return {
            "n": self.count,
            "s": list(self.partials),
            "lo": self.low,
            "hi": self.high,
            "q": self.sketch.to_text(),
            "late": self.late,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowAggregate:
        """The inverse of :meth:`to_dict`; a :class:`ValueError` naming the key for anything malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"window aggregate: must be a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - _KEYS, key=str)
        if unknown:
            raise ValueError(f"window aggregate: unknown key(s) {unknown}")
        missing = sorted(_KEYS - {"late"} - set(data))
        if missing:
            raise ValueError(f"window aggregate: missing key(s) {missing}")
        count, late = _count(data, "n"), _count(data, "late") if "late" in data else 0
        partials = data["s"]
        if not isinstance(partials, list) or not all(_finite(x) for x in partials):
            raise ValueError(f"window aggregate: s must be a list of finite numbers, got {partials!r}")
        low, high = data["lo"], data["hi"]
        if count == 0 and (low is not None or high is not None or partials):
            raise ValueError("window aggregate: an empty window (n = 0) has no s, lo or hi")
        if count > 0 and not (_finite(low) and _finite(high) and low <= high):
            raise ValueError(f"window aggregate: lo and hi must be finite numbers, lo <= hi, got {low!r}, {high!r}")
        sketch = _sketch_from_text(data["q"])
        if sketch.count != count:
            raise ValueError(f"window aggregate: the sketch holds {sketch.count} values but n is {count}")
        return cls(
            count,
            tuple(float(x) for x in partials),
            None if low is None else float(low),
            None if high is None else float(high),
            sketch,
            late,
        )


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and abs(x) <= _MAX


def _count(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"window aggregate: {key} must be an integer >= 0, got {value!r}")
    return value


def _sketch_from_text(text: object) -> QuantileSketch:
    if not isinstance(text, str):
        raise ValueError(f"window aggregate: q must be a sketch's text, got {type(text).__name__}")
    try:
        base64.b64decode(text.partition(":")[2], validate=True)  # from_text would drop stray characters
        sketch = QuantileSketch.from_text(text)
        _ = sketch.count  # deserializes: a corrupt blob fails here, not at the first read
    except (ValueError, binascii.Error, RuntimeError) as e:
        raise ValueError(f"window aggregate: q is not a quantile sketch ({e})") from e
    if not 8 <= sketch.k <= 65535:  # KLL's own bounds on k
        raise ValueError(f"window aggregate: q's k must be within [8, 65535], got {sketch.k}")
    return sketch


def window_start(ts: float, width_s: int) -> int:
    """The start (epoch seconds) of the tumbling window of ``width_s`` seconds holding ``ts``, aligned to the epoch.

    >>> window_start(119.9, 60), window_start(120, 60), window_start(-1, 60)
    (60, 120, -60)
    """
    if width_s <= 0:
        raise ValueError(f"width_s must be positive, got {width_s!r}")
    return int(ts // width_s) * width_s


def parse_duration(text: str | int | float) -> int:
    """Whole seconds > 0 from ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"300"`` or a plain number of seconds.

    >>> parse_duration("90s"), parse_duration(300), parse_duration("1d")
    (90, 300, 86400)
    >>> parse_duration("1.5h")
    Traceback (most recent call last):
    ...
    ValueError: invalid duration '1.5h': use whole seconds or a whole number with s, m, h or d (e.g. '90s', '5m')
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: must be a number of seconds or a text like '5m'")
    if isinstance(text, int | float):
        if not (math.isfinite(text) and text == int(text)):
            raise ValueError(f"invalid duration {text!r}: must be whole seconds")
        seconds = int(text)
    else:
        match = _DURATION.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"invalid duration {text!r}: use whole seconds or a whole number with s, m, h or d (e.g. '90s', '5m')"
            )
        seconds = int(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be positive")
    return seconds


def _kll(sketch: QuantileSketch) -> kll_doubles_sketch:
    return kll_doubles_sketch.deserialize(sketch.blob)


def sketch_drift(
    reference: WindowAggregate,
    current: WindowAggregate,
    alpha: float = DEFAULT_ALPHA,
    psi_threshold: float = PSI_THRESHOLD,
    min_n: int = DEFAULT_MIN_N,
) -> SketchDrift | None:
    """PSI and the two-sample KS test of two windows, from their sketches alone; None under ``min_n`` on a side.

    - KS D: the largest gap between the two sketches' CDFs, evaluated at every item either sketch retains (the
      data points themselves while a sketch is exact, so D is then ``scipy.stats.ks_2samp``'s exactly).
    - p-value: ``scipy.stats.kstwo.sf(D, round(n1 * n2 / (n1 + n2)))``, the asymptotic two-sample p-value
      ``ks_2samp(method="asymp")`` computes; the sketch's rank error (±0.7% at k = 400) is ignored.
    - PSI: 10 bins cut at the reference's deciles (ties merged), each bin's share the difference of the CDF (values
      below the cut) at its edges, shares under 1e-4 clipped to it, as :func:`metrics.drift.psi` does.

    ``drifted`` is ``psi >= psi_threshold and p_value < alpha``, as in :func:`metrics.drift.numeric_drift`.

    >>> ref = WindowAggregate().update_many(range(100))
    >>> same, shifted = sketch_drift(ref, ref), sketch_drift(ref, WindowAggregate().update_many(range(50, 150)))
    >>> same.psi, same.ks_d, same.drifted, shifted.ks_d, shifted.drifted
    (0.0, 0.0, False, 0.5, True)
    """
    n_ref, n_cur = reference.count, current.count
    if min(n_ref, n_cur) < min_n or min(n_ref, n_cur) == 0:
        return None
    ref, cur = _kll(reference.sketch), _kll(current.sketch)
    points = np.unique(np.fromiter((item for s in (ref, cur) for item, _ in s), float))
    ranks = [np.asarray(s.get_cdf(points.tolist())[:-1]) for s in (ref, cur)]
    d = float(np.max(np.abs(ranks[0] - ranks[1])))
    p_value = float(stats.kstwo.sf(d, max(1, round(n_ref * n_cur / (n_ref + n_cur)))))
    edges = np.unique(ref.get_quantiles(np.linspace(0, 1, PSI_BINS + 1)[1:-1].tolist()))
    p = np.diff([0.0, *ref.get_cdf(edges.tolist(), inclusive=False)[:-1], 1.0])
    q = np.diff([0.0, *cur.get_cdf(edges.tolist(), inclusive=False)[:-1], 1.0])
    pe, qe = np.maximum(p, PSI_EPS), np.maximum(q, PSI_EPS)
    value = float(np.sum((qe - pe) * np.log(qe / pe)))
    return SketchDrift(value, d, p_value, value >= psi_threshold and p_value < alpha, n_ref, n_cur)
