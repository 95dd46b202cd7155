"""Refresh detection: the ask key and the window."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from metrics.refresh import ask_key, normalize_input, within_window

WORDS_OR_SPACE = st.lists(
    st.sampled_from(["What", "is", "my", "balance", "?", "ÉTÉ", "ß", " ", "\t", "\n"]), max_size=12
)


@given(WORDS_OR_SPACE, st.sampled_from([str.upper, str.lower, str.title, lambda s: f"  {s}\n"]))
def test_refresh_key_ignores_whitespace_and_case(words: list[str], variant: Callable[[str], str]) -> None:
    text = " ".join(words)
    assert ask_key("s", "app", "route", variant(text)) == ask_key("s", "app", "route", text)
    assert normalize_input(variant(text)) == normalize_input(text)


def test_refresh_window_is_symmetric_and_inclusive() -> None:
    assert within_window(100.0, 700.0, 600) and within_window(700.0, 100.0, 600)
    assert not within_window(100.0, 700.5, 600)
    assert ask_key("s", "a", "r", "hi there") != ask_key("s", "a", "r", "hi  there!")


@given(st.tuples(*[st.text(max_size=6)] * 4), st.tuples(*[st.text(max_size=6)] * 4))
def test_refresh_key_separates_sessions_apps_routes_and_inputs(x: tuple[str, ...], y: tuple[str, ...]) -> None:
    same = x[:3] == y[:3] and normalize_input(x[3]) == normalize_input(y[3])
    assert (ask_key(*x) == ask_key(*y)) == same  # length-prefixed: ("ab", "c") never collides with ("a", "bc")
