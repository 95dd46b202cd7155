"""Refresh detection: the same user asking the same thing again, shortly after.

A *regenerate* is explicit (the app sends a ``regenerate`` event when the user presses the button). A *refresh*
is implicit: a new generation in the same session, app and route whose input is the same as an earlier one's
(after normalizing whitespace and case) within a time window, because the user reloaded the page or sent the
prompt again. The earlier generation is the refreshed one, so ``refresh rate = refreshed generations /
generations`` has the same form as the regenerate rate (both a :class:`metrics.rates.Rate`).

Example::

    >>> key = ask_key("s1", "chat", "answer", "What is my balance?")
    >>> key == ask_key("s1", "chat", "answer", "  what is  my BALANCE? ")
    True
    >>> key == ask_key("s2", "chat", "answer", "What is my balance?")
    False
    >>> within_window(1000.0, 1300.0, window_s=600), within_window(1000.0, 1700.0, window_s=600)
    (True, False)
"""

from __future__ import annotations

import hashlib

DEFAULT_WINDOW_S = 600.0


def normalize_input(text: str) -> str:
    """What counts as "the same input": whitespace runs collapsed, ends trimmed, case folded."""
    return " ".join(text.split()).casefold()


def ask_key(session_id: str, app: str, route: str, text: str) -> str:
    """A short key for (session, app, route, normalized input); the input itself is not kept."""
    h = hashlib.blake2b(digest_size=16)
    for part in (session_id, app, route, normalize_input(text)):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))  # length-prefixed: no two tuples hash the same bytes
        h.update(data)
    return h.hexdigest()


def within_window(earlier_ts: float, ts: float, window_s: float = DEFAULT_WINDOW_S) -> bool:
    """Whether two asks (epoch seconds, event time) are close enough for the second to be a refresh."""
    return abs(ts - earlier_ts) <= window_s
