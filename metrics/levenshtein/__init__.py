"""Exact Levenshtein distance, bit-parallel, compiled with Numba (Myers 1999 / Hyyrö 2003).

The shorter string of a pair is the *pattern*: a bitmask per character marks where it occurs. Every character
of the longer string then updates all pattern positions at once with a few 64-bit operations, so a pair costs
``ceil(m / 64) * n`` word operations instead of ``m * n`` cells. Common prefixes and suffixes are stripped
first; then each pair takes one of three paths:

- pattern of at most 64 characters: one word;
- similar lengths (within 31) up to 512 characters: Hyyrö's band, the 63 cells around the diagonal in one
  word (exact when the distance is at most 31; otherwise the pair goes on to the next path);
- otherwise: the blocked variant (a word per 64 pattern characters, carries passed from block to block) within
  an Ukkonen band; when the band would hold every block (unrelated texts, such as novelty candidates), over
  all blocks without the band's bookkeeping.

The one-word and band paths run two pairs interleaved in one loop: a pair's recurrence is a chain of
dependent operations, and a second, independent chain keeps the CPU's other execution units busy.

Characters are Unicode code points (strings are packed as UTF-32 in one pass), so ``"é"`` and ``"e\\u0301"``
differ, as in :mod:`rapidfuzz`. Word level: tokens are mapped to exact integer ids and the same kernels run on
the id sequences.

Entry points release the GIL and run pairs in parallel (``prange``); functions are compiled with
``cache=True``, so a process after the first one loads machine code from ``__pycache__`` instead of compiling
(call :func:`warm_up` at start-up to pay the rest before the first real batch).

Example::

    >>> distance_pairs(["kitten", "flaw"], ["sitting", "lawn"]).tolist()
    [3, 2]
    >>> distance_one_to_many("abc", ["abc", "abd", ""]).tolist()
    [0, 1, 3]
    >>> word_distance_pairs(["the cat sat"], ["the dog sat down"]).tolist()
    [2]
"""

from __future__ import annotations

from metrics.levenshtein.distance import (
    distance_index_pairs,
    distance_one_to_many,
    distance_pairs,
    index_pair_distances,
    warm_up,
    word_distance_index_pairs,
    word_distance_one_to_many,
    word_distance_pairs,
)
from metrics.levenshtein.packing import pack

__all__ = [
    "distance_index_pairs",
    "distance_one_to_many",
    "distance_pairs",
    "index_pair_distances",
    "pack",
    "warm_up",
    "word_distance_index_pairs",
    "word_distance_one_to_many",
    "word_distance_pairs",
]
