"""metrics.clusters: the clustering, regions, lift, labels and id matching of the failure clusters, on arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from metrics.clusters import (
    NOISE,
    ClusterParams,
    assign,
    cluster_failures,
    ctfidf_labels,
    hdbscan_labels,
    match_ids,
    merge_similar,
    regions,
    sample_rows,
    spread,
    terms,
    unit_rows,
)
from metrics.similarity import to_int8


def themes(rng: np.random.Generator, sizes: list[int], dim: int = 24, spread: float = 0.05) -> np.ndarray:
    """Tight groups of unit vectors, group ``g`` around axis ``g``."""
    parts = []
    for axis, n in enumerate(sizes):
        v = rng.normal(0, spread, (n, dim))
        v[:, axis] += 1
        parts.append(v)
    return unit_rows(np.vstack(parts))


def scattered(rng: np.random.Generator, n: int, dim: int = 24) -> np.ndarray:
    return unit_rows(rng.normal(0, 1, (n, dim)))


vectors_st = arrays(np.float32, st.tuples(st.integers(1, 40), st.just(6)), elements=st.floats(-1, 1, width=32))


@given(vectors_st, st.integers(1, 4), st.floats(0.01, 1.5), st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_assign_picks_the_nearest_centroid_whose_radius_holds_the_row(
    vectors: np.ndarray, k: int, radius: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    centroids = unit_rows(rng.normal(0, 1, (k, 6)))
    radii = np.full(k, radius, np.float32)
    labels, sims = assign(vectors, centroids, radii, chunk=7)
    rows = unit_rows(vectors)
    all_sims = rows @ centroids.T
    for i in range(len(vectors)):
        if np.linalg.norm(vectors[i]) == 0:
            continue  # a zero row has no direction: whatever it gets, it is not checked here
        inside = np.flatnonzero(1 - all_sims[i] <= radius + 1e-6)
        if labels[i] == NOISE:
            assert not len(np.flatnonzero(1 - all_sims[i] <= radius - 1e-5))
            assert sims[i] == 0
        else:
            assert labels[i] in inside
            assert sims[i] == pytest.approx(
                all_sims[i].max() if len(inside) == k else all_sims[i, inside].max(), abs=1e-5
            )


def test_assign_reads_int8_directions_like_floats() -> None:
    rng = np.random.default_rng(1)
    vectors = scattered(rng, 300, 384)
    centroids = unit_rows(vectors[:5] + 0.1)
    radii = np.full(5, 0.9, np.float32)
    as_float = assign(vectors, centroids, radii)
    as_int8 = assign(np.stack([to_int8(v) for v in vectors]), centroids, radii)
    assert (as_float[0] == as_int8[0]).mean() > 0.98
    assert np.abs(as_float[1] - as_int8[1]).max() < 0.02


def test_assign_without_centroids_is_all_noise() -> None:
    labels, sims = assign(np.ones((3, 4), np.float32), np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    assert labels.tolist() == [NOISE] * 3 and sims.tolist() == [0, 0, 0]


@given(st.integers(0, 2**16), st.floats(0.3, 0.99))
@settings(max_examples=30, deadline=None)
def test_merging_leaves_no_two_centroids_above_the_threshold(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    vectors = scattered(rng, 120, 5)
    labels = rng.integers(-1, 8, 120)
    merged = merge_similar(vectors, labels, threshold)
    assert ((merged == NOISE) == (labels == NOISE)).all()
    # every original cluster lands whole in one merged cluster
    for c in set(labels.tolist()) - {NOISE}:
        assert len(set(merged[labels == c].tolist())) == 1
    present = sorted(set(merged.tolist()) - {NOISE})
    assert present == list(range(len(present)))
    centroids = unit_rows(np.array([vectors[merged == c].sum(axis=0) for c in present]).reshape(len(present), -1))
    sims = centroids @ centroids.T
    np.fill_diagonal(sims, -1)
    assert len(present) < 2 or sims.max() < threshold + 1e-6


def test_regions_hold_the_quantile_of_their_core_and_ignore_strays() -> None:
    rng = np.random.default_rng(2)
    vectors = np.vstack([themes(rng, [50, 50]), scattered(rng, 4)])
    labels = np.r_[np.repeat([0, 1], 50), 0, 0, 1, 1]  # two stray points attached to each cluster
    centroids, radii = regions(vectors, labels, 0.9)
    for c in (0, 1):
        core = vectors[:100][labels[:100] == c]
        distances = 1 - core @ centroids[c]
        assert np.mean(distances <= radii[c] + 1e-7) == pytest.approx(0.9, abs=0.03)
        assert radii[c] < 0.05 and np.linalg.norm(centroids[c]) == pytest.approx(1.0, abs=1e-6)
        strays = vectors[100:][labels[100:] == c]
        assert (1 - strays @ centroids[c] > radii[c]).all()


@given(arrays(np.uint64, st.integers(0, 50), elements=st.integers(0, 2**63), unique=True), st.integers(1, 60))
def test_the_sample_is_the_rows_with_the_smallest_keys(keys: np.ndarray, cap: int) -> None:
    rows = sample_rows(keys, cap)
    assert len(rows) == min(len(keys), cap)
    assert rows.tolist() == sorted(rows.tolist())
    if len(rows) < len(keys):
        assert keys[rows].max() < np.delete(keys, rows).min()


def test_planted_themes_are_found_ranked_and_lifted() -> None:
    rng = np.random.default_rng(3)
    vectors = np.vstack([themes(rng, [150, 150, 150]), scattered(rng, 1500)])
    theme = np.r_[np.repeat([0, 1, 2], 150), np.full(1500, -1)]
    rates = np.array([0.9, 0.6, 0.3])
    failed = np.where(theme >= 0, rng.random(len(theme)) < rates[np.maximum(theme, 0)], rng.random(len(theme)) < 0.05)
    result = cluster_failures(vectors, failed, ClusterParams(dims=10))
    assert result.baseline_failure_rate == pytest.approx(failed.mean())
    found = {}
    for cluster in result.clusters:
        members = result.assignment == cluster.index
        assert cluster.size == members.sum() and cluster.failures == (members & failed).sum()
        assert cluster.lift == pytest.approx(cluster.failure_rate / failed.mean())
        assert 0 <= cluster.p_value <= 1
        top = np.bincount(theme[members] + 1, minlength=4).argmax() - 1
        if top >= 0:
            found[int(top)] = cluster
    assert sorted(found) == [0, 1, 2]
    for t, cluster in found.items():
        members = result.assignment == cluster.index
        assert (theme[members] == t).mean() > 0.9 and members[theme == t].mean() > 0.8
        assert cluster.p_value < 1e-3
    scores = [c.score for c in result.clusters]
    assert scores == sorted(scores, reverse=True)
    assert [found[t] for t in (0, 1, 2)] == result.clusters[:3]  # more failures and more lift rank first
    # noise: failures in no region
    assert set(result.assignment.tolist()) <= set(range(len(result.centroids))) | {NOISE}


def test_the_same_input_gives_the_same_clusters_and_the_sample_follows_the_keys() -> None:
    rng = np.random.default_rng(4)
    vectors = np.vstack([themes(rng, [200, 200]), scattered(rng, 400)])
    failed = np.r_[np.ones(400, bool), rng.random(400) < 0.1]
    keys = rng.permutation(len(vectors)).astype(np.uint64)
    params = ClusterParams(dims=8, sample_cap=100)
    a = cluster_failures(vectors, failed, params, keys)
    b = cluster_failures(vectors, failed, params, keys)
    assert (a.assignment == b.assignment).all() and np.allclose(a.centroids, b.centroids)
    assert len(a.sample) == 100 and failed[a.sample].all()
    failure_rows = np.flatnonzero(failed)
    assert set(a.sample.tolist()) == set(failure_rows[np.argsort(keys[failure_rows])[:100]].tolist())
    # the sample found both themes; every generation, sampled or not, was assigned to them
    assert len({a.assignment[i] for i in range(400)} - {NOISE}) == 2
    assert (a.assignment[:400] != NOISE).mean() > 0.85


def test_a_crowd_is_looked_into_and_what_stays_spread_out_is_noise() -> None:
    rng = np.random.default_rng(6)
    crowd = scattered(rng, 400, 24)
    theme = themes(rng, [0, 60], 24, spread=0.15)  # one loose theme along the second axis, inside the crowd
    vectors = np.vstack([crowd, theme])
    labels = hdbscan_labels(vectors, ClusterParams(dims=24, min_cluster_size=15))
    found = [c for c in set(labels.tolist()) - {NOISE} if spread(vectors[labels == c]) <= 0.5]
    assert found == sorted(set(labels.tolist()) - {NOISE})  # every cluster returned is a tight one
    assert any((labels[400:] == c).mean() > 0.8 for c in found)
    assert (labels[:400] == NOISE).mean() > 0.8
    assert spread(crowd) > 0.6 and spread(theme) < 0.2


def test_too_few_points_for_a_cluster_is_all_noise() -> None:
    rng = np.random.default_rng(5)
    vectors = scattered(rng, 30)
    result = cluster_failures(vectors, np.r_[np.ones(5, bool), np.zeros(25, bool)], ClusterParams(dims=4))
    assert result.clusters == [] and (result.assignment == NOISE).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"dims": 1}, "dims"), ({"min_cluster_size": 1}, "min_cluster_size"), ({"merge_similarity": 0}, "merge"),
     ({"radius_quantile": 1.5}, "radius_quantile"), ({"sample_cap": 5}, "sample_cap")],
)  # fmt: skip
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterParams(**kwargs)  # type: ignore[arg-type]


def test_terms_drop_stop_words_and_pair_adjacent_words() -> None:
    assert terms("Why is my Python script raising a KeyError?") == [
        "python",
        "script",
        "raising",
        "keyerror",
        "python script",
        "script raising",
    ]  # fmt: skip  (no "raising keyerror": a stop word stood between them)
    assert terms("I want to get a 100% refund, 2 times!") == ["refund", "times"]
    assert terms("") == []


def test_labels_name_what_distinguishes_each_cluster() -> None:
    refunds = [f"refund for my broken {item} please" for item in ("laptop", "phone", "chair", "lamp")]
    python = [f"python {err} when importing pandas" for err in ("keyerror", "typeerror", "valueerror", "indexerror")]
    background = ["please help me with my account", "my order arrived late", "when do you open"] * 3
    labels = ctfidf_labels([refunds, python], background)
    assert labels[0].split(", ")[0] in {"refund", "broken"} and "refund" in labels[0]
    assert "python" in labels[1] and "pandas" in labels[1]
    assert all("please" not in label for label in labels)
    # a term shared by both clusters ranks below each one's own terms
    assert ctfidf_labels([["alpha shared", "alpha shared"], ["beta shared", "beta shared"]], n_terms=1) == [
        "alpha", "beta",
    ]  # fmt: skip


def test_labels_of_clusters_without_text_are_empty() -> None:
    assert ctfidf_labels([[], ["refund refund"]]) == ["", "refund"]


def test_ids_are_matched_one_to_one_best_first() -> None:
    new = unit_rows(np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]]))
    previous = [("c-1", unit_rows(np.array([[1.0, 0.05, 0.0]]))[0]), ("c-2", unit_rows(np.array([[0.0, 1.0, 0.0]]))[0])]
    assert match_ids(new, previous, 0.9) == ["c-1", None, None]
    assert match_ids(new, [], 0.9) == [None, None, None]
    assert match_ids(new[:0], previous, 0.9) == []
