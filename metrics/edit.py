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

from metrics.levenshtein import distance_pairs


def edit_distance(original: str, edited: str) -> int:
    """Levenshtein distance (unit-cost insert, delete, substitute) over Unicode code points.

    One pair; the worker scores a whole batch at once with :func:`metrics.levenshtein.distance_pairs`.
    """
    return int(distance_pairs([original], [edited])[0])


def normalized(distance: int, original_len: int, edited_len: int) -> float:
    """``distance / max(lengths)``: 0.0 = kept as is, 1.0 = fully rewritten (0.0 when both are empty)."""
    longest = max(original_len, edited_len)
    return distance / longest if longest else 0.0


def edit_ratio(original: str, edited: str) -> float:
    """``edit_distance / max(len(original), len(edited))``: 0.0 = kept as is, 1.0 = fully rewritten."""
    return normalized(edit_distance(original, edited), len(original), len(edited))
