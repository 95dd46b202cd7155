"""Edit metrics between what the model wrote and what the user kept (character level, Unicode code points).

Example::

    >>> edit_distance("kitten", "sitting")
    3
    >>> round(edit_ratio("kitten", "sitting"), 4)
    0.4286
    >>> edit_ratio("", "")
    0.0
"""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein


def edit_distance(original: str, edited: str) -> int:
    """Levenshtein distance (unit-cost insert, delete, substitute) over Unicode code points."""
    return int(Levenshtein.distance(original, edited))


def edit_ratio(original: str, edited: str) -> float:
    """``edit_distance / max(len(original), len(edited))``: 0.0 = kept as is, 1.0 = fully rewritten."""
    longest = max(len(original), len(edited))
    return edit_distance(original, edited) / longest if longest else 0.0
