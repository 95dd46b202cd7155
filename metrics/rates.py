"""Rates as small, immutable, mergeable states, with a Wilson 95% score interval.

Regenerate rate (regenerates / generations), refresh rate, feedback rate (generations with feedback /
generations) and thumbs-up rate (ups / rated) are all a :class:`Rate`: ``successes`` out of ``trials``.

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
from dataclasses import dataclass
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
