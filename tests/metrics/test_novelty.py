"""Novelty: the minimum normalized distance to recent outputs, batched or one by one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from metrics.novelty import RecentOutputs, novelty, novelty_many


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=50), st.text(max_size=40))
def test_novelty_is_the_minimum_normalized_distance(history: list[str], output: str) -> None:
    recent = RecentOutputs(k=8)
    for h in history:
        recent = recent.update(h)
    assert recent.outputs == tuple(history[-8:])
    value = novelty(output, recent)
    if not history:
        assert value is None
        return
    expected = min(
        Levenshtein.distance(output, h) / max(len(output), len(h)) if max(len(output), len(h)) else 0.0
        for h in history[-8:]
    )
    assert value == pytest.approx(expected)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 6),
    st.lists(st.text(max_size=90), max_size=6),
    st.lists(st.text(alphabet="ab cé😀", max_size=90) | st.text(max_size=20), max_size=12),
)
def test_novelty_many_equals_novelty_output_by_output(k: int, start: list[str], outputs: list[str]) -> None:
    """The batched form (one Numba call for a whole batch) gives exactly the sequential values and state."""
    initial = RecentOutputs(k, tuple(start[-k:]))
    values, final = novelty_many(outputs, initial)
    state, expected = initial, []
    for output in outputs:
        expected.append(novelty(output, state))
        state = state.update(output)
    assert values == expected and final == state
    # and against rapidfuzz, independently of novelty()
    pool = [*initial.outputs, *outputs]
    for p, value in zip(range(len(initial.outputs), len(pool)), values, strict=True):
        window = pool[max(0, p - k) : p]
        if not window:
            assert value is None
            continue
        longest = [max(len(pool[p]), len(h)) for h in window]
        oracle = min(Levenshtein.distance(pool[p], h) / n if n else 0.0 for h, n in zip(window, longest, strict=True))
        assert value == pytest.approx(oracle)


def test_recent_outputs_need_room_for_one() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        RecentOutputs(k=0)


def test_recent_outputs_merge_keeps_the_newest() -> None:
    a = RecentOutputs(k=3).update("a").update("b")
    b = RecentOutputs(k=3).update("c").update("d")
    assert a.merge(b).outputs == ("b", "c", "d")
    assert RecentOutputs().get() is None
