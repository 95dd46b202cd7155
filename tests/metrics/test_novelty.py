"""Novelty: the minimum normalized distance to recent outputs, batched or one by one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from metrics.novelty import Level, RecentOutputs, novelty, novelty_many

# word tokens drawn from a small vocabulary (so that words repeat), any whitespace between them
_WORDY = st.lists(st.sampled_from(["a", "b", "the", "cat", "é", "😀", "sat", "on"]), max_size=25).flatmap(
    lambda words: st.lists(st.sampled_from([" ", "  ", "\n", "\t "]), min_size=len(words), max_size=len(words)).map(
        lambda gaps: "".join(g + w for g, w in zip(gaps, words, strict=True))
    )
)


def _units(text: str, level: Level) -> str | list[str]:
    return text.split() if level == "word" else text


def _oracle(output: str, window: list[str], level: Level) -> float:
    """rapidfuzz's distance (on token lists for word level), normalized by the longer length in its units."""
    values = []
    for h in window:
        a, b = _units(output, level), _units(h, level)
        longest = max(len(a), len(b))
        values.append(Levenshtein.distance(a, b) / longest if longest else 0.0)
    return min(values)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(max_size=40) | _WORDY, max_size=50),
    st.text(max_size=40) | _WORDY,
    st.sampled_from(["word", "char"]),
)
def test_novelty_is_the_minimum_normalized_distance(history: list[str], output: str, level: Level) -> None:
    recent = RecentOutputs(k=8)
    for h in history:
        recent = recent.update(h)
    assert recent.outputs == tuple(history[-8:])
    value = novelty(output, recent, level)
    if not history:
        assert value is None
        return
    assert value == pytest.approx(_oracle(output, history[-8:], level))


def test_word_level_counts_whole_words() -> None:
    recent = RecentOutputs(k=2).update("the cat sat on the mat")
    assert novelty("the cat sat on the mat", recent) == 0.0
    assert novelty("the  cat sat\non the mat", recent) == 0.0  # whitespace does not count
    assert novelty("the cat sat on a mat", recent) == pytest.approx(1 / 6)
    assert novelty("the cat sat on a mat", recent, level="char") == pytest.approx(3 / 22)
    assert novelty("", RecentOutputs(k=2).update("   ")) == 0.0  # no words on either side: nothing differs


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level must be one of word, char"):
        novelty("x", RecentOutputs().update("y"), level="token")  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 6),
    st.lists(st.text(max_size=90), max_size=6),
    st.lists(st.text(alphabet="ab cé😀", max_size=90) | st.text(max_size=20) | _WORDY, max_size=12),
    st.sampled_from(["word", "char"]),
)
def test_novelty_many_equals_novelty_output_by_output(
    k: int, start: list[str], outputs: list[str], level: Level
) -> None:
    """The batched form (one Numba call for a whole batch) gives exactly the sequential values and state."""
    initial = RecentOutputs(k, tuple(start[-k:]))
    values, final = novelty_many(outputs, initial, level=level)
    state, expected = initial, []
    for output in outputs:
        expected.append(novelty(output, state, level))
        state = state.update(output)
    assert values == expected and final == state
    # and against rapidfuzz, independently of novelty()
    pool = [*initial.outputs, *outputs]
    for p, value in zip(range(len(initial.outputs), len(pool)), values, strict=True):
        window = pool[max(0, p - k) : p]
        if not window:
            assert value is None
            continue
        assert value == pytest.approx(_oracle(pool[p], window, level))


def test_recent_outputs_need_room_for_one() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        RecentOutputs(k=0)


def test_recent_outputs_merge_keeps_the_newest() -> None:
    a = RecentOutputs(k=3).update("a").update("b")
    b = RecentOutputs(k=3).update("c").update("d")
    assert a.merge(b).outputs == ("b", "c", "d")
    assert RecentOutputs().get() is None
