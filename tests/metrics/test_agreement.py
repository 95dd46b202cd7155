"""metrics.agreement: Cohen's kappa against a hand-worked table and against scikit-learn's, on any pairs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from metrics.agreement import Confusion


def test_hand_worked_table() -> None:
    # Cohen (1960)-style worked example: p_o = (20 + 15) / 50 = 0.7; judge good 25/50, user good 30/50;
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4
    table = Confusion(20, 5, 10, 15)
    assert table.kappa() == pytest.approx(0.4)
    counts = {"n": 50, "both_good": 20, "judge_good_user_bad": 5, "judge_bad_user_good": 10, "both_bad": 15}
    assert table.get() == {**counts, "observed_agreement": pytest.approx(0.7), "kappa": pytest.approx(0.4)}


def test_edges() -> None:
    assert Confusion().kappa() is None and Confusion().get()["observed_agreement"] is None
    assert Confusion(both_good=7).kappa() is None  # both always say good: kappa undefined
    assert Confusion(5, 0, 0, 5).kappa() == pytest.approx(1.0)
    assert Confusion(0, 5, 5, 0).kappa() == pytest.approx(-1.0)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=200))
def test_kappa_equals_scikit_learns_and_merge_equals_update(pairs: list[tuple[bool, bool]]) -> None:
    table = Confusion.of(pairs)
    judge, user = [p[0] for p in pairs], [p[1] for p in pairs]
    if len(set(judge) | set(user)) < 2:
        assert table.kappa() is None
    else:
        assert table.kappa() == pytest.approx(cohen_kappa_score(judge, user), abs=1e-9)
    half = len(pairs) // 2
    assert Confusion.of(pairs[:half]).merge(Confusion.of(pairs[half:])) == table
