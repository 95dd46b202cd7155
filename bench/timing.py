"""Timing helpers shared by the benchmark scripts (``sys.path`` holds the repository root, as each script sets)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warm: bool = False) -> float:
    """The median wall time of ``repeats`` calls of ``fn`` (after one call not timed, with ``warm``)."""
    if warm:
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
