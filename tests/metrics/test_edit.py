from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.edit import EditStats, edit_distance, edit_ratio


def levenshtein_dp(a: str, b: str) -> int:
    """Textbook Wagner–Fischer: the independent oracle for small strings."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


TEXT = st.text(alphabet=st.sampled_from("ab cé😀\u0301"), max_size=30)


def test_known_values() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("same", "same") == 0
    assert edit_distance("😀", "😁") == 1  # code points, not UTF-8 bytes
    assert edit_distance("e\u0301", "é") == 2  # combining sequence vs precomposed: two code points differ
    assert edit_ratio("", "") == 0.0
    assert edit_ratio("abc", "") == 1.0
    assert edit_ratio("kitten", "sitting") == 3 / 7


@settings(deadline=None)  # the first call may compile the Numba kernels
@given(TEXT, TEXT)
def test_distance_matches_dynamic_programming(a: str, b: str) -> None:
    assert edit_distance(a, b) == levenshtein_dp(a, b)


@settings(deadline=None)
@given(TEXT, TEXT, TEXT)
def test_metric_axioms(a: str, b: str, c: str) -> None:
    assert edit_distance(a, b) == edit_distance(b, a)
    assert (edit_distance(a, b) == 0) == (a == b)
    assert edit_distance(a, c) <= edit_distance(a, b) + edit_distance(b, c)
    assert abs(len(a) - len(b)) <= edit_distance(a, b) <= max(len(a), len(b))
    assert 0.0 <= edit_ratio(a, b) <= 1.0


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.floats(0, 1), st.integers(0, 90)), max_size=40), st.integers(0, 40))
def test_edit_stats_merge_equals_one_pass(rows: list[tuple[int, float, int]], cut: int) -> None:
    def run(xs: list[tuple[int, float, int]]) -> EditStats:
        s = EditStats()
        for d, r, w in xs:
            s = s.update(d, r, w)
        return s

    merged, single = run(rows[:cut]).merge(run(rows[cut:])), run(rows)
    assert (merged.count, merged.distance_sum, merged.word_distance_sum, merged.accepted) == (
        single.count, single.distance_sum, single.word_distance_sum, single.accepted)  # fmt: skip
    assert math.isclose(merged.ratio_sum, single.ratio_sum, abs_tol=1e-9)
    assert (single.get() is None) == (not rows)
