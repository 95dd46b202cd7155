"""Novelty / repetition: how far a new output is from the K most recent outputs of the same app and route.

``novelty = min over recent outputs of normalized edit distance`` (0 = an exact repeat, 1 = nothing in common),
computed with the one-vs-many Numba kernel. The state is the tuple of recent outputs, newest last.

Example::

    >>> recent = RecentOutputs(k=3).update("hello there").update("good morning")
    >>> round(novelty("hello there!", recent), 3)
    0.083
    >>> novelty("anything", RecentOutputs()) is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from metrics.levenshtein import distance_one_to_many

DEFAULT_K = 32


@dataclass(frozen=True, slots=True)
class RecentOutputs:
    k: int = DEFAULT_K
    outputs: tuple[str, ...] = ()

    def update(self, output: str) -> RecentOutputs:
        return RecentOutputs(self.k, (*self.outputs, output)[-self.k :])

    def merge(self, other: RecentOutputs) -> RecentOutputs:
        """Keeps ``other``'s outputs as the newer ones (order matters for recency)."""
        return RecentOutputs(self.k, (*self.outputs, *other.outputs)[-self.k :])

    def get(self) -> tuple[str, ...] | None:
        return self.outputs or None


def novelty(output: str, recent: RecentOutputs) -> float | None:
    """Minimum normalized distance from ``output`` to the recent outputs; None when there are none."""
    if not recent.outputs:
        return None
    distances = distance_one_to_many(output, list(recent.outputs))
    best = 1.0
    for other, d in zip(recent.outputs, distances, strict=True):
        longest = max(len(output), len(other))
        best = min(best, (int(d) / longest) if longest else 0.0)
    return best
