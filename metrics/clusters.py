"""Failure clusters: where in embedding space generations fail more often than the rest, on plain arrays.

The steps (:func:`cluster_failures` runs them all; the API and the CLI feed it what the sinks wrote):

1. **Cluster** a deterministic sample (at most ``sample_cap``) of the failures' embeddings: PCA down to ``dims``
   dimensions, then scikit-learn's HDBSCAN; clusters whose centroids (in the full space) have cosine similarity
   >= ``merge_similarity`` are merged (average linkage), because HDBSCAN splits one theme into several dense
   cores (docs/clusters.md has the measurements behind each default).
2. **Regions**: each cluster is a centroid (the normalised mean of its members) and a radius (the
   ``radius_quantile`` of its members' cosine distances to it). Every generation of the window, failed or not, is
   assigned to the nearest centroid whose radius holds it, or to none.
3. **Lift**: a region's failure rate divided by the window's; clusters are ranked by ``failures × lift`` (how many
   failures a region explains, weighted by how much more often they fail there), so a large region of ordinary
   traffic ranks below a smaller one that fails systematically. Each cluster's ``p_value`` (one-sided binomial
   test of its failures against the window's rate, Bonferroni-adjusted over the clusters) says whether the excess
   could be chance: failures spread at random still form dense regions where traffic is dense.
4. **Labels**: class-based TF-IDF over the inputs: terms frequent in one cluster's texts and rare in the others'.

Example (two themes that fail, among scattered traffic that fails now and then)::

    >>> rng = np.random.default_rng(0)
    >>> def theme(n, axis):
    ...     v = rng.normal(0, 0.05, (n, 16)); v[:, axis] += 1
    ...     return v / np.linalg.norm(v, axis=1, keepdims=True)
    >>> spread = rng.normal(0, 1, (600, 16)); spread /= np.linalg.norm(spread, axis=1, keepdims=True)
    >>> vectors = np.vstack([theme(100, 0), theme(100, 1), spread]).astype(np.float32)
    >>> failed = np.r_[rng.random(200) < 0.8, rng.random(600) < 0.1]
    >>> result = cluster_failures(vectors, failed, ClusterParams(dims=8))
    >>> [(c.size, c.failures, round(c.lift, 1)) for c in result.clusters]  # the scattered failures: no cluster
    [(91, 76, 2.9), (93, 73, 2.8)]
    >>> [int(np.sum(result.assignment[rows] == c.index)) for rows, c in zip((slice(0, 100), slice(100, 200)),
    ...                                                                     result.clusters[1::-1])]
    [93, 91]
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom
from sklearn.cluster import HDBSCAN
from sklearn.decomposition import PCA

NOISE = -1


@dataclass(frozen=True)
class ClusterParams:
    """How failures are clustered; each default is measured in docs/clusters.md."""

    dims: int = 10  # PCA dimensions before HDBSCAN: 384 -> 10 was ~130x faster on 10,000 points and found more
    min_cluster_size: int = 10
    min_samples: int = 5
    max_spread: float = 0.5  # median cosine distance to the centroid above which a cluster is a crowd, not a theme
    merge_similarity: float = 0.6  # sub-clusters of one theme had centroid cosine 0.6-0.75, distinct themes < 0.25
    radius_quantile: float = 0.95
    sample_cap: int = 10_000
    min_failures: int = 20  # fewer failures in the window: no clustering, an empty answer with the reason

    def __post_init__(self) -> None:
        if self.dims < 2:
            raise ValueError(f"dims must be >= 2, got {self.dims}")
        if self.min_cluster_size < 2 or self.min_samples < 1:
            raise ValueError("min_cluster_size must be >= 2 and min_samples >= 1")
        if not 0 < self.merge_similarity <= 1 or not 0 < self.radius_quantile <= 1 or not 0 < self.max_spread <= 2:
            raise ValueError("merge_similarity and radius_quantile must be in (0, 1], max_spread in (0, 2]")
        if self.sample_cap < self.min_cluster_size or self.min_failures < 2:
            raise ValueError("sample_cap must be >= min_cluster_size and min_failures >= 2")


@dataclass(frozen=True)
class Cluster:
    """One region: ``index`` into the result's centroids, what fell into it, and its rank key."""

    index: int
    size: int  # generations of the window in the region
    failures: int
    failure_rate: float
    lift: float
    p_value: float  # one-sided binomial test of the rate against the window's, Bonferroni-adjusted over the clusters

    @property
    def score(self) -> float:
        return self.failures * self.lift


@dataclass(frozen=True)
class ClusterResult:
    """``clusters`` ranked by ``failures × lift``; ``assignment[i]`` is the row of ``centroids`` generation ``i``
    fell into (``NOISE``: none) and ``similarity[i]`` its cosine to that centroid; ``sample`` the failure rows that
    were clustered."""

    clusters: list[Cluster]
    centroids: np.ndarray
    radii: np.ndarray
    assignment: np.ndarray
    similarity: np.ndarray
    baseline_failure_rate: float
    sample: np.ndarray


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32 (int8 directions from the ``embeddings`` dataset too)."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def sample_rows(keys: np.ndarray, cap: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Of ``rows`` (default: all), at most ``cap``: those with the smallest ``keys`` (a hash of each row's id, so
    the same rows every time), in ascending row order.

    >>> sample_rows(np.array([30, 10, 20, 40], np.uint64), 2).tolist()
    [1, 2]
    >>> sample_rows(np.array([30, 10, 20, 40], np.uint64), 1, np.array([0, 3])).tolist()
    [0]
    """
    rows = np.arange(len(keys)) if rows is None else np.asarray(rows)
    if len(rows) <= cap:
        return rows
    return np.sort(rows[np.argsort(keys[rows], kind="stable")[:cap]])


def hdbscan_model(params: ClusterParams) -> HDBSCAN:
    """The HDBSCAN that :func:`hdbscan_labels` fits (and the benchmark times)."""
    return HDBSCAN(min_cluster_size=params.min_cluster_size, min_samples=params.min_samples, copy=True)


def spread(vectors: np.ndarray) -> float:
    """The median cosine distance of unit ``vectors`` to their centroid: ~0.25-0.35 for a theme of questions,
    ~0.75 for unrelated texts (all-MiniLM-L6-v2, docs/clusters.md)."""
    centre = unit_rows(vectors.sum(axis=0, keepdims=True, dtype=np.float64))[0]
    return float(np.median(1.0 - vectors @ centre))


def reduce(vectors: np.ndarray, dims: int) -> np.ndarray:
    """``vectors`` projected on their first ``dims`` principal components (as they are when they have no more)."""
    if vectors.shape[1] <= dims or len(vectors) <= dims:
        return vectors
    return np.asarray(PCA(dims, svd_solver="randomized", random_state=0).fit_transform(vectors))


def hdbscan_labels(vectors: np.ndarray, params: ClusterParams, depth: int = 0) -> np.ndarray:
    """HDBSCAN's labels for unit ``vectors`` after PCA to ``params.dims`` (``NOISE`` for noise).

    Excess-of-mass selection sometimes returns one cluster holding a crowd of unrelated texts (and the themes
    inside it). A cluster more spread out than ``params.max_spread`` (:func:`spread`) is clustered again on its
    own (new PCA, new HDBSCAN), up to two levels down; what is still that spread out is noise, since a region
    around its centroid would hold a bit of everything.
    """
    if len(vectors) < params.min_cluster_size:
        return np.full(len(vectors), NOISE, dtype=np.int64)
    with warnings.catch_warnings():  # scikit-learn 1.9 warns about a default it will change in 1.10
        warnings.simplefilter("ignore", FutureWarning)
        labels = np.asarray(hdbscan_model(params).fit(reduce(vectors, params.dims)).labels_, dtype=np.int64)
    out = labels.copy()
    following = int(labels.max()) + 1
    for c in range(int(labels.max()) + 1):
        rows = np.flatnonzero(labels == c)
        if spread(vectors[rows]) <= params.max_spread:
            continue
        out[rows] = NOISE
        if depth < 2 and len(rows) >= 2 * params.min_cluster_size:
            inner = hdbscan_labels(vectors[rows], params, depth + 1)
            found = inner != NOISE
            out[rows[found]] = inner[found] + following
            following += int(inner.max()) + 1
    return out


def merge_similar(vectors: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Labels after merging clusters whose centroids have cosine >= ``threshold`` (average linkage: the pair with
    the most similar centroids first, the merged cluster's centroid is the mean of all its members); renumbered
    0, 1, … by first appearance.

    >>> v = unit_rows(np.array([[1, 0], [1, 0.1], [1, 0.2], [0, 1]]))
    >>> merge_similar(v, np.array([0, 1, 1, 2]), 0.9).tolist()
    [0, 0, 0, 1]
    """
    groups = {int(c): [int(c)] for c in np.unique(labels) if c != NOISE}
    sums = {c: vectors[labels == c].sum(axis=0, dtype=np.float64) for c in groups}
    while len(groups) > 1:
        keys = list(groups)
        centroids = unit_rows(np.array([sums[c] for c in keys]))
        sims = centroids @ centroids.T
        np.fill_diagonal(sims, -np.inf)
        i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
        if sims[i, j] < threshold:
            break
        a, b = keys[i], keys[j]
        groups[a] += groups.pop(b)
        sums[a] = sums[a] + sums.pop(b)
    out = np.full(len(labels), NOISE, dtype=np.int64)
    order = sorted(groups, key=lambda c: int(np.argmax(np.isin(labels, groups[c]))))
    for new, c in enumerate(order):
        out[np.isin(labels, groups[c])] = new
    return out


def regions(vectors: np.ndarray, labels: np.ndarray, quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster label 0…k-1: the unit centroid of its members and the ``quantile`` of their cosine distances to
    it, both over its core: members farther than the median distance plus three robust deviations (1.4826 × MAD)
    are left out, since a few stray points that HDBSCAN attached (after PCA, unrelated texts can land near a
    theme) would otherwise pull the radius over half the space.

    >>> v = unit_rows(np.array([[1, 0.01], [1, -0.01], [1, 0.02], [1, 0], [0, 1]]))
    >>> centroids, radii = regions(v, np.zeros(5, int), 1.0)
    >>> float(radii[0]) < 0.001
    True
    """
    k = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
    centroids = np.zeros((k, vectors.shape[1]), np.float32)
    radii = np.zeros(k, np.float32)
    for c in range(k):
        members = vectors[labels == c]
        centre = unit_rows(members.sum(axis=0, keepdims=True, dtype=np.float64))[0]
        distances = 1.0 - members @ centre
        median = np.median(distances)
        core = members[distances <= median + 3 * 1.4826 * np.median(np.abs(distances - median)) + 1e-6]
        centroids[c] = unit_rows(core.sum(axis=0, keepdims=True, dtype=np.float64))[0]
        radii[c] = np.quantile(1.0 - core @ centroids[c], quantile)
    return centroids, radii


def assign(
    vectors: np.ndarray, centroids: np.ndarray, radii: np.ndarray, chunk: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centroid whose radius holds it (``NOISE`` if none) and the cosine to it. ``vectors`` may
    be int8 directions: each chunk is widened and normalised on its own, so memory stays at one chunk of float32.

    >>> c = unit_rows(np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> labels, sims = assign(np.array([[9, 1], [1, 9], [1, 1]], np.int8), c, np.array([0.1, 0.1]))
    >>> labels.tolist()
    [0, 1, -1]
    """
    labels = np.full(len(vectors), NOISE, dtype=np.int64)
    sims = np.zeros(len(vectors), dtype=np.float32)
    if len(centroids) == 0:
        return labels, sims
    for start in range(0, len(vectors), chunk):
        block = unit_rows(vectors[start : start + chunk]) @ centroids.T
        # only centroids whose radius holds the row compete
        block[(1.0 - block) > radii[None, :]] = -np.inf
        best = np.argmax(block, axis=1)
        best_sim = block[np.arange(len(block)), best]
        inside = np.isfinite(best_sim)
        labels[start : start + chunk] = np.where(inside, best, NOISE)
        sims[start : start + chunk] = np.where(inside, best_sim, 0.0)
    return labels, sims


def cluster_failures(
    vectors: np.ndarray, failed: np.ndarray, params: ClusterParams | None = None, keys: np.ndarray | None = None
) -> ClusterResult:
    """Cluster the failed rows of ``vectors`` (one per generation of the window, unit or int8), assign every row to
    the regions, and rank them by ``failures × lift``. ``keys``: a hash of each row's id, choosing the sample when
    there are more than ``sample_cap`` failures (default: the row order)."""
    params = params or ClusterParams()
    failed = np.asarray(failed, dtype=bool)
    failure_rows = np.flatnonzero(failed)
    baseline = float(failed.mean()) if len(failed) else 0.0
    if keys is None:
        keys = np.arange(len(vectors), dtype=np.uint64)
    sample = sample_rows(np.asarray(keys), params.sample_cap, failure_rows)
    points = unit_rows(vectors[sample])
    labels = merge_similar(points, hdbscan_labels(points, params), params.merge_similarity)
    centroids, radii = regions(points, labels, params.radius_quantile)
    assignment, similarity = assign(vectors, centroids, radii)
    sizes = np.bincount(assignment[assignment >= 0], minlength=len(centroids))
    fails = np.bincount(assignment[(assignment >= 0) & failed], minlength=len(centroids))
    clusters = []
    found = int((sizes > 0).sum())
    for c in range(len(centroids)):
        if sizes[c] == 0:
            continue
        rate = fails[c] / sizes[c]
        p = min(1.0, float(binom.sf(fails[c] - 1, sizes[c], baseline)) * found)
        clusters.append(Cluster(c, int(sizes[c]), int(fails[c]), float(rate), float(rate / baseline), p))
    clusters.sort(key=lambda cl: (-cl.score, cl.index))
    return ClusterResult(clusters, centroids, radii, assignment, similarity, baseline, sample)


_WORD = re.compile(r"[^\W\d_][\w'-]*[^\W_]|[^\W\d_]", re.UNICODE)
_TOKEN = re.compile(r"[\w'-]+|[^\w\s]", re.UNICODE)  # words, numbers, and each punctuation mark on its own
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing don't down during each else ever every few for from further
    get gets got had has have having he her here hers herself him himself his how i i'm i've if in into is it it's
    its itself just let like may me might more most much must my myself need no nor not now of off on once only or
    other our ours ourselves out over own please same shall she should so some such than that that's the their
    theirs them themselves then there these they this those through to too under until up us very want was we were
    what what's when where which while who whom why will with would you you're your yours yourself yourselves
    aren't can't couldn't didn't doesn't hasn't haven't i'd i'll isn't it'll let's there's they're wasn't we're
    won't wouldn't you've yet""".split()  # noqa: SIM905
)


def terms(text: str) -> list[str]:
    """Lower-cased words (starting with a letter) without stop words, then the bigrams of words that stand next to
    each other (not across a stop word, a number or punctuation).

    >>> terms("How do I get a refund for my broken laptop?")
    ['refund', 'broken', 'laptop', 'broken laptop']
    """
    words: list[str] = []
    bigrams: list[str] = []
    previous = None
    for m in _TOKEN.finditer(text):
        token = m.group(0).lower()
        keep = bool(_WORD.fullmatch(token)) and token not in STOP_WORDS and len(token) > 1
        if keep:
            words.append(token)
            if previous is not None:
                bigrams.append(f"{previous} {token}")
        previous = token if keep else None
    return words + bigrams


def ctfidf_labels(classes: Sequence[Sequence[str]], background: Sequence[str] = (), n_terms: int = 3) -> list[str]:
    """A label for each class of texts: its ``n_terms`` highest class-based TF-IDF terms (BERTopic's c-TF-IDF:
    ``tf(t, c) / |c| × log(1 + A / f(t))``, A the mean number of terms per class, f(t) the term's count over all
    classes, ``background`` being one more class), joined by ", "; a term inside a better one is skipped.

    >>> ctfidf_labels([["refund my order", "refund the broken order"], ["python error", "python keyerror"]],
    ...               ["my order arrived", "hello there"])
    ['refund, order, broken', 'python, error, keyerror']
    """
    counts = [Counter(t for text in texts for t in terms(text)) for texts in [*classes, background]]
    totals = Counter[str]()
    for c in counts:
        totals.update(c)
    average = sum(sum(c.values()) for c in counts) / max(len(counts), 1)
    labels = []
    for c in counts[: len(classes)]:
        size = sum(c.values()) or 1
        weights = {t: n / size * math.log(1 + average / totals[t]) for t, n in c.items() if n > 1 or len(c) < 8}
        chosen: list[str] = []
        for t in sorted(weights, key=lambda t: (-weights[t], t)):
            if any(t in better.split() or better in t.split() for better in chosen):
                continue
            if " " in t and any(w in chosen for w in t.split()):
                continue
            chosen.append(t)
            if len(chosen) == n_terms:
                break
        labels.append(", ".join(chosen))
    return labels


def match_ids(centroids: np.ndarray, previous: Sequence[tuple[str, np.ndarray]], threshold: float) -> list[str | None]:
    """For each new centroid, the id of the previous cluster whose centroid it matches (cosine >= ``threshold``),
    one to one, the most similar pairs first; None where none does.

    >>> c = unit_rows(np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> match_ids(c, [("c-7", unit_rows(np.array([[0.1, 1.0]]))[0])], 0.9)
    [None, 'c-7']
    """
    out: list[str | None] = [None] * len(centroids)
    if not previous or not len(centroids):
        return out
    old = unit_rows(np.array([v for _, v in previous]))
    sims = unit_rows(centroids) @ old.T
    pairs = sorted(((sims[i, j], i, j) for i in range(sims.shape[0]) for j in range(sims.shape[1])), reverse=True)
    used_new, used_old = set(), set()
    for sim, i, j in pairs:
        if sim < threshold:
            break
        if i in used_new or j in used_old:
            continue
        out[i] = previous[j][0]
        used_new.add(i)
        used_old.add(j)
    return out
