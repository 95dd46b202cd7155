"""How well a judge agrees with the users: a confusion table of two binary verdicts and Cohen's kappa.

The judge says good or bad (its score at or above a threshold), the user says good or bad (thumbs up or down; not
regenerated or regenerated; kept or edited heavily). ``kappa = (p_o - p_e) / (1 - p_e)``: the agreement observed
beyond what two raters with the same base rates would reach by chance; 1 is perfect, 0 chance, negative worse.
None when undefined (no pairs, or both raters always give the same one verdict).

Example (a hand-worked table: 20 both good, 5 judge good / user bad, 10 judge bad / user good, 15 both bad)::

    >>> table = Confusion(both_good=20, judge_good_user_bad=5, judge_bad_user_good=10, both_bad=15)
    >>> table.n, round(table.observed, 2), round(table.expected, 2), round(table.kappa(), 4)
    (50, 0.7, 0.5, 0.4)
    >>> Confusion().kappa() is None
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Confusion:
    """Counts of (judge verdict, user verdict) pairs; ``update`` adds one, ``merge`` adds another table."""

    both_good: int = 0
    judge_good_user_bad: int = 0
    judge_bad_user_good: int = 0
    both_bad: int = 0

    def update(self, judge_good: bool, user_good: bool) -> Confusion:
        if judge_good and user_good:
            return replace(self, both_good=self.both_good + 1)
        if judge_good:
            return replace(self, judge_good_user_bad=self.judge_good_user_bad + 1)
        if user_good:
            return replace(self, judge_bad_user_good=self.judge_bad_user_good + 1)
        return replace(self, both_bad=self.both_bad + 1)

    def merge(self, other: Confusion) -> Confusion:
        return Confusion(
            self.both_good + other.both_good, self.judge_good_user_bad + other.judge_good_user_bad,
            self.judge_bad_user_good + other.judge_bad_user_good, self.both_bad + other.both_bad,
        )  # fmt: skip

    @classmethod
    def of(cls, pairs: Iterable[tuple[bool, bool]]) -> Confusion:
        table = cls()
        for judge_good, user_good in pairs:
            table = table.update(judge_good, user_good)
        return table

    @property
    def n(self) -> int:
        return self.both_good + self.judge_good_user_bad + self.judge_bad_user_good + self.both_bad

    @property
    def observed(self) -> float:
        return (self.both_good + self.both_bad) / self.n if self.n else float("nan")

    @property
    def expected(self) -> float:
        """Chance agreement from the two raters' own rates of "good"."""
        if not self.n:
            return float("nan")
        judge = (self.both_good + self.judge_good_user_bad) / self.n
        user = (self.both_good + self.judge_bad_user_good) / self.n
        return judge * user + (1 - judge) * (1 - user)

    def kappa(self) -> float | None:
        if not self.n or self.expected == 1.0:
            return None
        return (self.observed - self.expected) / (1 - self.expected)

    def get(self) -> dict[str, int | float | None]:
        return {"n": self.n, "both_good": self.both_good, "judge_good_user_bad": self.judge_good_user_bad,
                "judge_bad_user_good": self.judge_bad_user_good, "both_bad": self.both_bad,
                "observed_agreement": self.observed if self.n else None, "kappa": self.kappa()}  # fmt: skip
