"""Rates as small, immutable, mergeable states, with a Wilson 95% score interval.

Regenerate rate (regenerates / generations), refresh rate (refreshed generations / generations, see
:mod:`metrics.refresh`), feedback rate (generations with feedback / generations) and thumbs-up rate (ups /
rated) are all a :class:`Rate`: ``successes`` out of ``trials``. :class:`KeyedRates` holds one per session or
per window (:func:`window_key`).

Example::

    >>> r = Rate().update(True).update(False).update(True, trials=2)
    >>> r.successes, r.trials
    (2, 4)
    >>> v = r.get()
    >>> round(v.rate, 3), round(v.low, 3), round(v.high, 3)
    (0.5, 0.15, 0.85)
    >>> Rate().get() is None
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

Z95 = 1.959963984540054


class RateValue(NamedTuple):
    rate: float
    low: float
    high: float
    trials: int


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (good at small n and near 0 or 1)."""
    if trials <= 0:
        raise ValueError("trials must be positive")
    if not 0 <= successes <= trials:
        raise ValueError("successes must be between 0 and trials")
    p = successes / trials
    z2 = z * z
    denom = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, min(p, centre - half))
    high = 1.0 if successes == trials else min(1.0, max(p, centre + half))
    return low, high


@dataclass(frozen=True, slots=True)
class Rate:
    """``successes`` out of ``trials``; ``get()`` is None while there is no trial."""

    successes: int = 0
    trials: int = 0

    def update(self, success: bool | int, trials: int = 1) -> Rate:
        """Add ``trials`` trials of which ``int(success)`` succeeded (``success`` may count several)."""
        hits = int(success)
        if trials < 0 or not 0 <= hits <= trials:
            raise ValueError("need 0 <= successes <= trials")
        return Rate(self.successes + hits, self.trials + trials)

    def merge(self, other: Rate) -> Rate:
        return Rate(self.successes + other.successes, self.trials + other.trials)

    def get(self) -> RateValue | None:
        if self.trials == 0:
            return None
        low, high = wilson_interval(self.successes, self.trials)
        return RateValue(self.successes / self.trials, low, high, self.trials)

    def to_dict(self) -> dict[str, Any]:
        return {"successes": self.successes, "trials": self.trials}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rate:
        return cls(int(data["successes"]), int(data["trials"]))


class KeyedRatesValue(NamedTuple):
    pooled: RateValue  # all trials together
    per_key: dict[str, RateValue]
    mean_of_keys: float  # each key (session, window) counts once
    share_with_success: float  # keys with at least one success, e.g. sessions that regenerated at all


@dataclass(frozen=True, slots=True)
class KeyedRates:
    """A :class:`Rate` per key: per-session rates (key = session id) or per-window rates (key = window start).

    Updates return a new value (the mapping is copied, so keep the number of keys modest: one session's or one
    query's worth). ``get()`` is None while there is no trial.

    Example::

        >>> r = KeyedRates().update("s1", True).update("s1", False).update("s2", False)
        >>> v = r.get()
        >>> v.pooled.rate, v.per_key["s1"].rate, v.mean_of_keys, v.share_with_success
        (0.3333333333333333, 0.5, 0.25, 0.5)
    """

    rates: dict[str, Rate] = field(default_factory=dict)

    def update(self, key: str, success: bool | int, trials: int = 1) -> KeyedRates:
        rates = dict(self.rates)
        rates[key] = rates.get(key, Rate()).update(success, trials)
        return KeyedRates(rates)

    def merge(self, other: KeyedRates) -> KeyedRates:
        rates = dict(self.rates)
        for key, rate in other.rates.items():
            rates[key] = rates[key].merge(rate) if key in rates else rate
        return KeyedRates(rates)

    def get(self) -> KeyedRatesValue | None:
        per_key = {k: v for k, r in self.rates.items() if (v := r.get()) is not None}
        if not per_key:
            return None
        pooled = Rate(sum(r.successes for r in self.rates.values()), sum(r.trials for r in self.rates.values()))
        value = pooled.get()
        assert value is not None
        return KeyedRatesValue(
            value,
            per_key,
            sum(v.rate for v in per_key.values()) / len(per_key),
            sum(self.rates[k].successes > 0 for k in per_key) / len(per_key),
        )


def window_key(ts: datetime, width: timedelta) -> str:
    """The start of the tumbling window of ``width`` holding ``ts`` (UTC, aligned to the epoch), ISO 8601.

    >>> window_key(datetime(2026, 11, 25, 10, 47, tzinfo=UTC), timedelta(minutes=30))
    '2026-11-25T10:30:00Z'
    """
    seconds = width.total_seconds()
    if seconds <= 0:
        raise ValueError("width must be positive")
    aware = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    start = math.floor(aware.timestamp() / seconds) * seconds
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
