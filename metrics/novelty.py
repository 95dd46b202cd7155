"""Novelty / repetition: how far a new output is from the K most recent outputs of the same app and route.

``novelty = min over recent outputs of normalized edit distance`` (0 = an exact repeat, 1 = nothing in common),
computed with the Numba kernels. The state is the tuple of recent outputs, newest last.

Two levels: ``"word"`` (the default: Levenshtein over whitespace tokens, normalized by the longer token count)
and ``"char"`` (over Unicode code points, normalized by the longer length). Both tell a near-repeat from a fresh
answer on real outputs; word level costs ~15x less on long ones (a 1,800-character answer against 32 others:
~0.2 ms instead of ~3 ms on one core), so a worker keeps up with real assistant traffic. The figures, and where
character level sees more (typos), are in ``docs/long-outputs.md``. Values of the two levels are not
comparable with each other: word level reads higher on unrelated texts (~0.9 against ~0.75 for long English
answers), since few whole words line up.

Example::

    >>> recent = RecentOutputs(k=3).update("hello there").update("good morning")
    >>> round(novelty("hello there!", recent, level="char"), 3)
    0.083
    >>> novelty("hello there!", recent)  # one word of two differs
    0.5
    >>> novelty("anything", RecentOutputs()) is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from metrics.levenshtein import index_pair_distances

DEFAULT_K = 32
MAX_CHARS = 20_000  # novelty reads this much of each output: a near-repeat shows in its start, and state stays small
Level = Literal["word", "char"]
LEVELS: tuple[Level, ...] = ("word", "char")


@dataclass(frozen=True, slots=True)
class RecentOutputs:
    k: int = DEFAULT_K
    outputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")

    def update(self, output: str) -> RecentOutputs:
        return RecentOutputs(self.k, (*self.outputs, output)[-self.k :])

    def merge(self, other: RecentOutputs) -> RecentOutputs:
        """Keeps ``other``'s outputs as the newer ones (order matters for recency)."""
        return RecentOutputs(self.k, (*self.outputs, *other.outputs)[-self.k :])

    def get(self) -> tuple[str, ...] | None:
        return self.outputs or None


def novelty(output: str, recent: RecentOutputs, level: Level = "word") -> float | None:
    """Minimum normalized distance from ``output`` to the recent outputs; None when there are none."""
    return novelty_many([output], recent, level=level)[0][0]


def novelty_many(
    outputs: Sequence[str], recent: RecentOutputs, parallel: bool = False, level: Level = "word"
) -> tuple[list[float | None], RecentOutputs]:
    """The novelty of each output in turn, each one then joining the recent outputs; and the final state.

    The same values as calling :func:`novelty` and :meth:`RecentOutputs.update` output by output, with all
    the distances of the batch computed in one Numba call that never holds the GIL (the worker runs it on a
    thread while its event loop goes on) and every text packed once instead of once per comparison.

    >>> values, state = novelty_many(["hello there", "hello there!", "bye"], RecentOutputs(k=2), level="char")
    >>> [None if v is None else round(v, 3) for v in values], state.outputs
    ([None, 0.083, 0.909], ('hello there!', 'bye'))
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    pool = (*recent.outputs, *outputs)
    first = len(recent.outputs)
    # output p (index in pool) against pool[max(0, p - k) : p]: its k predecessors, as novelty() sees them
    counts = [min(recent.k, p) for p in range(first, len(pool))]
    i = np.repeat(np.arange(first, len(pool), dtype=np.int64), counts)
    windows = [np.arange(p - c, p, dtype=np.int64) for p, c in zip(range(first, len(pool)), counts, strict=True)]
    j = np.concatenate(windows) if windows else np.empty(0, np.int64)
    distances, lengths = index_pair_distances(pool, i, j, parallel, words=level == "word")
    longest = np.maximum(lengths[i], lengths[j])
    normalized = np.where(longest > 0, distances / np.maximum(longest, 1), 0.0)
    values: list[float | None] = []
    at = 0
    for c in counts:
        values.append(min(1.0, float(normalized[at : at + c].min())) if c else None)
        at += c
    return values, RecentOutputs(recent.k, pool[-recent.k :])
