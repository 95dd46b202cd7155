"""Drift between a reference window and a current one: embeddings, numeric scores, categorical labels.

- Embeddings: MMD² with an RBF kernel (bandwidth by the median heuristic on the pooled sample) and a
  permutation-test p-value (a fixed seed, so the same data always gives the same answer), plus the Euclidean
  distance between the two centroids (Arize Phoenix's drift measure) in ``details``.
- Numeric scores: PSI over the reference's quantile bins and the Jensen-Shannon distance of the binned
  distributions (base 2, 0..1), with the two-sample Kolmogorov-Smirnov p-value.
- Categorical labels: the χ² test of the two windows' counts and the Jensen-Shannon distance.

``drifted`` is true when the statistic reaches its threshold *and* p < alpha; under ``min_n`` observations on a
side nothing is tested (``insufficient_data``).

Example (the same numbers twice: nothing to see; a shifted copy: drift)::

    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(0, 1, 500)
    >>> numeric_drift(ref, rng.normal(0, 1, 500)).drifted, numeric_drift(ref, rng.normal(1, 1, 500)).drifted
    (False, True)
    >>> categorical_drift(["a"] * 50 + ["b"] * 50, ["a"] * 90 + ["b"] * 10).drifted
    True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from metrics.analysis import DriftSettings

_DEFAULTS = DriftSettings()  # the defaults are defined (and explained) once, with the config that overrides them
DEFAULT_ALPHA = _DEFAULTS.alpha
DEFAULT_MIN_N = 30
MMD2_THRESHOLD = _DEFAULTS.mmd2_threshold
PSI_THRESHOLD = _DEFAULTS.psi_threshold
JS_THRESHOLD = _DEFAULTS.js_threshold
PERMUTATIONS = 200
SEED = 20261130


@dataclass(frozen=True, slots=True)
class Drift:
    """One comparison of a current window with the reference."""

    method: str
    statistic: float | None
    threshold: float
    p_value: float | None
    drifted: bool
    n_reference: int
    n_current: int
    insufficient_data: bool
    details: dict[str, Any] = field(default_factory=dict)


def _insufficient(method: str, threshold: float, n_ref: int, n_cur: int, min_n: int) -> Drift | None:
    if min(n_ref, n_cur) >= min_n:
        return None
    return Drift(method, None, threshold, None, False, n_ref, n_cur, True, {"min_n": min_n})


def median_bandwidth(z: np.ndarray, max_points: int = 1000) -> float:
    """The median pairwise Euclidean distance of (at most ``max_points`` of) the rows of ``z``."""
    sample = z[:max_points]
    sq = (sample * sample).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * sample @ sample.T, 0.0)
    upper = d2[np.triu_indices(len(sample), 1)]
    positive = upper[upper > 0]
    return float(np.sqrt(np.median(positive))) if len(positive) else 1.0


def embedding_drift(
    reference: np.ndarray,
    current: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    threshold: float = MMD2_THRESHOLD,
    min_n: int = DEFAULT_MIN_N,
    permutations: int = PERMUTATIONS,
    seed: int = SEED,
) -> Drift:
    """Unbiased MMD² of two sets of vectors, with a permutation p-value ``(1 + #≥) / (1 + P)``.

    All permutations are evaluated at once from one matrix product ``K @ A`` over the pooled kernel matrix (A:
    one column of side memberships per permutation), which gives each one's within- and between-side sums.
    """
    x, y = np.asarray(reference, np.float64), np.asarray(current, np.float64)
    method = "mmd2_rbf"
    too_few = _insufficient(method, threshold, len(x), len(y), min_n)
    if too_few is not None:
        return too_few
    z = np.vstack([x, y])
    bandwidth = median_bandwidth(np.random.default_rng(seed).permutation(z))
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    kernel = np.exp(-d2 / (2 * bandwidth**2))
    n, m = len(x), len(y)
    rng = np.random.default_rng(seed)
    sides = np.zeros((len(z), permutations + 1))  # 1 = reference side; column 0 the real split
    sides[:n, 0] = 1.0
    for p in range(1, permutations + 1):
        sides[rng.permutation(len(z))[:n], p] = 1.0
    k_sides = kernel @ sides
    s_xx = np.einsum("ip,ip->p", sides, k_sides)  # sums over pairs within the reference side, diagonal included
    s_x = k_sides.sum(0)  # the reference side against everything
    s_yy = kernel.sum() - 2 * s_x + s_xx
    s_xy = s_x - s_xx
    statistics = (s_xx - n) / (n * (n - 1)) + (s_yy - m) / (m * (m - 1)) - 2 * s_xy / (n * m)  # diagonal: k(z, z) = 1
    observed = float(statistics[0])
    p_value = float((1 + np.sum(statistics[1:] >= observed)) / (1 + permutations))
    centroid = float(np.linalg.norm(x.mean(0) - y.mean(0)))
    details = {"bandwidth": bandwidth, "centroid_distance": centroid, "permutations": permutations}
    drifted = observed >= threshold and p_value < alpha
    return Drift(method, observed, threshold, p_value, drifted, n, m, False, details)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> tuple[float, float]:
    """PSI over the reference's quantile bins, and the Jensen-Shannon distance (base 2) of the binned shares.

    Bin edges are the reference's deciles (ties merged); values beyond them fall in the outer bins. Empty bins
    count as ``eps`` in PSI (its logarithm is otherwise infinite).

    >>> round(psi(np.arange(1000.0), np.arange(1000.0))[0], 6)
    0.0
    """
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    p, q = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    pe, qe = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((qe - pe) * np.log(qe / pe))), float(jensenshannon(p, q, base=2))


def numeric_drift(
    reference: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    threshold: float = PSI_THRESHOLD,
    min_n: int = DEFAULT_MIN_N,
) -> Drift:
    """PSI (the statistic) and the Jensen-Shannon distance of a score's values; the KS test's p-value."""
    x, y = np.asarray(reference, float), np.asarray(current, float)
    too_few = _insufficient("psi", threshold, len(x), len(y), min_n)
    if too_few is not None:
        return too_few
    value, js = psi(x, y)
    p_value = float(stats.ks_2samp(x, y).pvalue)
    details = {"js_distance": js, "ks_statistic": float(stats.ks_2samp(x, y).statistic)}
    return Drift(
        "psi", value, threshold, p_value, value >= threshold and p_value < alpha, len(x), len(y), False, details
    )


def categorical_drift(
    reference: Sequence[str | None],
    current: Sequence[str | None],
    alpha: float = DEFAULT_ALPHA,
    threshold: float = JS_THRESHOLD,
    min_n: int = DEFAULT_MIN_N,
) -> Drift:
    """The Jensen-Shannon distance of the two windows' category shares (the statistic) and the χ² test's p-value."""
    too_few = _insufficient("jensen_shannon", threshold, len(reference), len(current), min_n)
    if too_few is not None:
        return too_few
    ref, cur = Counter(reference), Counter(current)
    categories = sorted(set(ref) | set(cur), key=lambda c: (c is None, c or ""))
    table = np.array([[ref[c] for c in categories], [cur[c] for c in categories]], float)
    js = float(jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum(), base=2))
    p_value = 1.0 if len(categories) < 2 else float(stats.chi2_contingency(table, correction=False).pvalue)
    details = {"categories": len(categories), "test": "chi-square"}
    drifted = js >= threshold and p_value < alpha
    return Drift("jensen_shannon", js, threshold, p_value, drifted, len(reference), len(current), False, details)
