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

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class EditStats:
    """Running edit metrics of a group (e.g. one model): mergeable sums, ``get()`` None while empty.

    Example::

        >>> s = EditStats().update(3, 0.5, 1).update(0, 0.0, 0)
        >>> s.get()
        {'count': 2, 'mean_distance': 1.5, 'mean_ratio': 0.25, 'mean_word_distance': 0.5, 'accepted_rate': 0.5}
    """

    count: int = 0
    distance_sum: int = 0
    ratio_sum: float = 0.0
    word_distance_sum: int = 0
    accepted: int = 0

    def update(self, distance: int, ratio: float, word_distance: int) -> EditStats:
        return EditStats(
            self.count + 1,
            self.distance_sum + distance,
            self.ratio_sum + ratio,
            self.word_distance_sum + word_distance,
            self.accepted + (distance == 0),
        )

    def merge(self, other: EditStats) -> EditStats:
        return EditStats(
            self.count + other.count,
            self.distance_sum + other.distance_sum,
            self.ratio_sum + other.ratio_sum,
            self.word_distance_sum + other.word_distance_sum,
            self.accepted + other.accepted,
        )

    def get(self) -> dict[str, float] | None:
        if self.count == 0:
            return None
        return {
            "count": self.count,
            "mean_distance": self.distance_sum / self.count,
            "mean_ratio": self.ratio_sum / self.count,
            "mean_word_distance": self.word_distance_sum / self.count,
            "accepted_rate": self.accepted / self.count,
        }
