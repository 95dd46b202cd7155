"""The public functions: distances of pairs, of one string to many, of index pairs, at character or word level."""

from __future__ import annotations

from collections.abc import Sequence

import numba as nb
import numpy as np

from metrics.levenshtein.kernels import chunk_distances, parallel_distances
from metrics.levenshtein.packing import pack, pack_ids, token_ids, utf32

_SERIAL_CHARS = 32_768  # below this many characters in a call, one thread: waking the pool costs more


def _run(
    a: np.ndarray, a_start: np.ndarray, a_end: np.ndarray,
    b: np.ndarray, b_start: np.ndarray, b_end: np.ndarray, chars: int | None = None, parallel: bool = True,
) -> np.ndarray:  # fmt: skip
    """All pairs; in parallel (``prange`` over chunks) unless the call is small (``chars`` in all, if known)
    or ``parallel`` is False.

    Small calls (a novelty check: one output against 32 recent ones) run on the calling thread: a parallel
    region would wake every Numba thread for a few microseconds of work each, and in the worker those
    threads would fight the embedding model's threads for the cores.
    """
    n = a_start.shape[0]
    if chars is None:
        chars = int((a_end - a_start).sum() + (b_end - b_start).sum())
    if chars < _SERIAL_CHARS or not parallel:
        out = np.empty(n, np.int64)
        chunk_distances(a, a_start, a_end, b, b_start, b_end, out, 0, n)
        return out
    return parallel_distances(a, a_start, a_end, b, b_start, b_end, max(1, min(n, nb.get_num_threads() * 2)))


def distance_pairs(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Character-level Levenshtein distance of each pair ``(a[i], b[i])``, as int64."""
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length ({len(a)} != {len(b)})")
    if not a:
        return np.empty(0, np.int64)
    abuf, astart, aend = pack(a, 0)
    bbuf, bstart, bend = pack(b, 1)
    return _run(abuf, astart, aend, bbuf, bstart, bend)


def distance_one_to_many(x: str, candidates: Sequence[str]) -> np.ndarray:
    """Distance from ``x`` to each candidate (novelty: compare a new output with recent ones)."""
    if not candidates:
        return np.empty(0, np.int64)
    xbuf = utf32(x)
    n = len(candidates)
    bbuf, bstart, bend = pack(candidates, 1)
    starts = np.zeros(n, np.int64)
    ends = np.full(n, len(x), np.int64)
    return _run(xbuf, starts, ends, bbuf, bstart, bend, n * len(x) + sum(map(len, candidates)))


def index_pair_distances(
    strings: Sequence[str], i: np.ndarray, j: np.ndarray, parallel: bool = True, words: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Distance of ``strings[i[k]]`` and ``strings[j[k]]`` for each k, and every string's length, in characters
    (or in whitespace-separated words with ``words=True``); every string is packed (or tokenized) once.

    For many pairs among few strings (novelty of a batch: each output against the 32 before it), packing
    each pair's strings again would cost more than the distances; the lengths come from the same packing
    (novelty normalizes by them). ``parallel=False`` keeps the call on the calling thread (see :func:`_run`).

    >>> texts, i, j = ["the cat sat", "the dog sat", "a cat"], np.array([0, 0]), np.array([1, 2])
    >>> d, n = index_pair_distances(texts, i, j, words=True)
    >>> d.tolist(), n.tolist()
    ([1, 2], [3, 3, 2])
    """
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    if i.shape != j.shape:
        raise ValueError(f"i and j must have the same length ({i.shape[0]} != {j.shape[0]})")
    buf, start, end = pack_ids(token_ids(strings, {})) if words else pack(strings)
    if not i.size:
        return np.empty(0, np.int64), end - start
    units = int((end[i] - start[i]).sum() + (end[j] - start[j]).sum())
    return _run(buf, start[i], end[i], buf, start[j], end[j], units, parallel), end - start


def distance_index_pairs(strings: Sequence[str], i: np.ndarray, j: np.ndarray, parallel: bool = True) -> np.ndarray:
    """Character distances of index pairs (:func:`index_pair_distances` without the lengths).

    >>> distance_index_pairs(["kitten", "sitting", "mitten"], np.array([0, 0]), np.array([1, 2])).tolist()
    [3, 1]
    """
    return index_pair_distances(strings, i, j, parallel)[0]


def word_distance_index_pairs(
    strings: Sequence[str], i: np.ndarray, j: np.ndarray, parallel: bool = True
) -> np.ndarray:
    """Word distances of index pairs: every string is split and mapped to token ids once.

    >>> word_distance_index_pairs(["the cat sat", "the dog sat", "a cat"], np.array([0, 0]), np.array([1, 2])).tolist()
    [1, 2]
    """
    return index_pair_distances(strings, i, j, parallel, words=True)[0]


def word_distance_pairs(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Word-level Levenshtein distance (tokens split on whitespace, mapped to exact integer ids)."""
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length ({len(a)} != {len(b)})")
    if not a:
        return np.empty(0, np.int64)
    vocab: dict[str, int] = {}
    abuf, astart, aend = pack_ids(token_ids(a, vocab))
    bbuf, bstart, bend = pack_ids(token_ids(b, vocab))
    return _run(abuf, astart, aend, bbuf, bstart, bend)


def word_distance_one_to_many(x: str, candidates: Sequence[str]) -> np.ndarray:
    """Word-level distance from ``x`` to each candidate."""
    return word_distance_pairs([x] * len(candidates), candidates)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel specialisation the worker uses."""
    distance_pairs(["warm-up", "é" * 70], ["warm up", "e" * 70])
    word_distance_pairs(["warm up now"], ["warm now"])
    a, start, end = pack(["warm-up", "é" * 70])
    parallel_distances(a, start, end, a, start[::-1].copy(), end[::-1].copy(), 1)  # the parallel form of large calls
