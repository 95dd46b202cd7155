"""Exact Levenshtein distance, bit-parallel, compiled with Numba (Myers 1999 / Hyyrö 2003).

The shorter string of a pair is the *pattern*: a bitmask per character marks where it occurs. Every character
of the longer string then updates all pattern positions at once with a few 64-bit operations, so a pair costs
``ceil(m / 64) * n`` word operations instead of ``m * n`` cells. Common prefixes and suffixes are stripped
first; then each pair takes one of three paths:

- pattern of at most 64 characters: one word;
- similar lengths (within 31) up to 512 characters: Hyyrö's band, the 63 cells around the diagonal in one
  word (exact when the distance is at most 31; otherwise the pair goes on to the next path);
- otherwise: the blocked variant (a word per 64 pattern characters, carries passed from block to block) within
  an Ukkonen band.

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

import threading
from collections.abc import Sequence

import numba as nb
import numpy as np

_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_DIRECT = 256  # code points below this use a direct table; the rest a small open-addressing hash
_EMPTY = np.int64(-1)
_SMALL_K = 31  # the largest band one 64-bit word can hold (2k + 1 <= 64)
_SMALL_MAX_LEN = 512  # longer strings rarely stay within 31 edits; a failed small-band pass is wasted work
# Pairs the small band rejected (more than 31 apart) with patterns up to this long get one pass over all
# blocks instead of a narrow guess and a second pass: novelty checks (dissimilar outputs of ~256 characters)
# ran 1.36x faster; for longer patterns the narrow guess still pays (512 characters: 0.92x when full).
_RETRY_FULL = 256


@nb.njit(cache=True, nogil=True, inline="always")
def _slot(keys: np.ndarray, cp: np.int64) -> np.int64:
    """Slot of code point ``cp`` in the open-addressing table ``keys`` (-1 = free), or where it would go."""
    mask = keys.shape[0] - 1
    h = (cp * 0x9E3779B1) & mask
    while keys[h] != _EMPTY and keys[h] != cp:
        h = (h + 1) & mask
    return h


@nb.njit(cache=True, nogil=True)
def _table_size(max_len: int) -> int:
    size = 16
    while size < 2 * max_len + 2:
        size *= 2
    return size


@nb.njit(cache=True, nogil=True, inline="always")
def _set_bits(
    p: np.ndarray, p0: int, m: int, offset: int,
    direct: np.ndarray, keys: np.ndarray, wide: np.ndarray, used: np.ndarray,
) -> int:  # fmt: skip
    """Mark pattern ``p[p0 : p0 + m]`` in the bitmask tables: position i is bit ``(i + offset) % 64`` of row
    ``(i + offset) // 64`` of its character's entry (``direct[row, cp]`` below 256, else ``wide[slot, row]``
    of the open-addressing table ``keys``). Returns how many slots it took, listed in ``used``."""
    u = 0
    for i in range(m):
        cp = np.int64(p[p0 + i])
        row = (i + offset) >> 6
        bit = _ONE << np.uint64((i + offset) & 63)
        if cp < _DIRECT:
            direct[row, cp] |= bit
        else:
            h = _slot(keys, cp)
            if keys[h] == _EMPTY:
                keys[h] = cp
                used[u] = h
                u += 1
                wide[h, :] = _ZERO  # a slot's row is cleared when a key takes it
            wide[h, row] |= bit
    return u


@nb.njit(cache=True, nogil=True, inline="always")
def _clear_bits(
    p: np.ndarray, p0: int, m: int, offset: int, direct: np.ndarray, keys: np.ndarray, used: np.ndarray, u: int
) -> None:
    """Undo :func:`_set_bits`: only what was set, so the tables are reused without a full clear."""
    first = offset >> 6
    last = (m - 1 + offset) >> 6
    if (last - first + 1) * _DIRECT <= 8 * m:  # whole rows: a memset beats m scattered stores
        direct[first : last + 1, :] = _ZERO
    else:
        for i in range(m):
            cp = np.int64(p[p0 + i])
            if cp < _DIRECT:
                direct[(i + offset) >> 6, cp] = _ZERO
    for i in range(u):
        keys[used[i]] = _EMPTY


@nb.njit(cache=True, nogil=True, inline="always")
def _lane(
    a: np.ndarray, b: np.ndarray, j: int, from_a: np.ndarray,
    p_start: np.ndarray, p_len: np.ndarray, t_start: np.ndarray, t_len: np.ndarray,
) -> tuple[np.ndarray, int, int, np.ndarray, int, int]:  # fmt: skip
    """Pair ``j`` as (shorter string, start, length, longer string, start, length)."""
    if from_a[j]:
        return a, p_start[j], p_len[j], b, t_start[j], t_len[j]
    return b, p_start[j], p_len[j], a, t_start[j], t_len[j]


@nb.njit(cache=True, nogil=True, inline="always")
def _two_lanes(
    a: np.ndarray, b: np.ndarray, idx: np.ndarray, q: int, count: int, from_a: np.ndarray,
    p_start: np.ndarray, p_len: np.ndarray, t_start: np.ndarray, t_len: np.ndarray,
) -> tuple[
    int, int, bool, np.ndarray, int, int, np.ndarray, int, int, np.ndarray, int, int, np.ndarray, int, int
]:  # fmt: skip
    """Pairs ``idx[q]`` and ``idx[q + 1]`` for the two-lane kernels: ``(j1, j2, two, *lane 1, *lane 2)``, each
    lane as :func:`_lane` gives it. Without a second pair (``two`` False), lane 2 repeats lane 1 with both
    lengths 0, so it runs no step."""
    j1 = idx[q]
    two = q + 1 < count
    j2 = idx[q + 1] if two else j1
    s1, s1_0, s1_n, l1, l1_0, l1_n = _lane(a, b, j1, from_a, p_start, p_len, t_start, t_len)
    s2, s2_0, s2_n, l2, l2_0, l2_n = _lane(a, b, j2, from_a, p_start, p_len, t_start, t_len)
    if not two:
        s2_n = l2_n = 0
    return j1, j2, two, s1, s1_0, s1_n, l1, l1_0, l1_n, s2, s2_0, s2_n, l2, l2_0, l2_n


@nb.njit(cache=True, nogil=True, inline="always")
def _word_step(X: np.uint64, VP: np.uint64, VN: np.uint64, s: np.uint64) -> tuple[np.uint64, np.uint64, np.int64]:
    """One text character of Myers/Hyyrö in one word: the new VP, VN and the change of the score (bit s)."""
    D0 = (((X & VP) + VP) ^ VP) | X | VN
    HP = VN | ~(D0 | VP)
    HN = D0 & VP
    delta = np.int64((HP >> s) & _ONE) - np.int64((HN >> s) & _ONE)
    HP = (HP << _ONE) | _ONE
    HN = HN << _ONE
    return HN | ~(D0 | HP), HP & D0, delta


@nb.njit(cache=True, nogil=True, inline="always")
def _band_step(
    X: np.uint64, VP: np.uint64, VN: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64, np.uint64]:
    """One text character of Hyyrö's band (the band moves down one row per step): D0, HP, HN, new VP, VN."""
    D0 = (((X & VP) + VP) ^ VP) | X | VN
    HP = VN | ~(D0 | VP)
    HN = D0 & VP
    return D0, HP, HN, HN | ~((D0 >> _ONE) | HP), (D0 >> _ONE) & HP


@nb.njit(cache=True, nogil=True)
def _single_words(
    a: np.ndarray, b: np.ndarray, idx: np.ndarray, count: int, from_a: np.ndarray,
    p_start: np.ndarray, p_len: np.ndarray, t_start: np.ndarray, t_len: np.ndarray, out: np.ndarray,
) -> None:  # fmt: skip
    """Patterns of at most 64 characters: Myers/Hyyrö in one word, two pairs at a time.

    The recurrence of one pair is a chain of dependent operations (about 11 cycles per character); two
    independent pairs interleaved in one loop keep the CPU's other execution units busy. Each lane has its
    own bitmask tables (:func:`_set_bits` with one row). The per-character lookups are written out for each
    lane: as a helper taking the tables as arguments they made the kernels 5x slower (reference counting).
    """
    size = _table_size(64)
    wrap = size - 1
    direct1 = np.zeros((1, _DIRECT), np.uint64)
    direct2 = np.zeros((1, _DIRECT), np.uint64)
    keys1 = np.full(size, _EMPTY, np.int64)
    keys2 = np.full(size, _EMPTY, np.int64)
    wide1 = np.empty((size, 1), np.uint64)
    wide2 = np.empty((size, 1), np.uint64)
    used1 = np.empty(64, np.int64)
    used2 = np.empty(64, np.int64)
    for q in range(0, count, 2):
        i1, i2, two, p1, ps1, m1, t1, ts1, n1, p2, ps2, m2, t2, ts2, n2 = _two_lanes(
            a, b, idx, q, count, from_a, p_start, p_len, t_start, t_len
        )
        u1 = _set_bits(p1, ps1, m1, 0, direct1, keys1, wide1, used1)
        u2 = _set_bits(p2, ps2, m2, 0, direct2, keys2, wide2, used2)
        VP1 = _ALL
        VN1 = _ZERO
        VP2 = _ALL
        VN2 = _ZERO
        d1 = np.int64(m1)
        d2 = np.int64(m2)
        s1 = np.uint64(max(m1, 1) - 1)
        s2 = np.uint64(max(m2, 1) - 1)
        for j in range(max(n1, n2)):
            if j < n1:
                cp = np.int64(t1[ts1 + j])
                if cp < _DIRECT:
                    X = direct1[0, cp]
                else:
                    h = (cp * 0x9E3779B1) & wrap
                    while keys1[h] != _EMPTY and keys1[h] != cp:
                        h = (h + 1) & wrap
                    X = wide1[h, 0] if keys1[h] == cp else _ZERO
                VP1, VN1, delta = _word_step(X, VP1, VN1, s1)
                d1 += delta
            if j < n2:
                cp = np.int64(t2[ts2 + j])
                if cp < _DIRECT:
                    X = direct2[0, cp]
                else:
                    h = (cp * 0x9E3779B1) & wrap
                    while keys2[h] != _EMPTY and keys2[h] != cp:
                        h = (h + 1) & wrap
                    X = wide2[h, 0] if keys2[h] == cp else _ZERO
                VP2, VN2, delta = _word_step(X, VP2, VN2, s2)
                d2 += delta
        out[i1] = d1
        if two:
            out[i2] = d2
        _clear_bits(p1, ps1, m1, 0, direct1, keys1, used1, u1)
        _clear_bits(p2, ps2, m2, 0, direct2, keys2, used2, u2)


@nb.njit(cache=True, nogil=True)
def _small_bands(
    a: np.ndarray, b: np.ndarray, idx: np.ndarray, count: int, from_a: np.ndarray,
    p_start: np.ndarray, p_len: np.ndarray, t_start: np.ndarray, t_len: np.ndarray, out: np.ndarray,
    max_len: int,
) -> None:  # fmt: skip
    """Similar lengths (within k = 31) up to 512 characters: Hyyrö's band, two pairs at a time.

    Only the 2k + 1 cells around the diagonal of each column are computed, all in one word, with the longer
    string as the pattern. Exact when the distance is <= k; a pair found further apart gets -1 here and goes
    to the blocked algorithm. The band at step i covers pattern positions i + k - 63 .. i + k; pattern
    position p is stored at bit p + 64 of a character's row, so the band is always two adjacent words,
    joined without a branch. Two independent pairs interleaved in one loop keep the CPU busy while each
    pair's recurrence waits on its own chain of dependent operations.
    """
    k = _SMALL_K
    rows = (max_len + 64 + 63) // 64 + 1
    size = _table_size(max_len)  # more slots than distinct characters in any pattern
    wrap = size - 1
    direct1 = np.zeros((rows, _DIRECT), np.uint64)  # row r: bits of pattern positions 64 (r - 1) .. 64 r - 1
    direct2 = np.zeros((rows, _DIRECT), np.uint64)
    keys1 = np.full(size, _EMPTY, np.int64)
    keys2 = np.full(size, _EMPTY, np.int64)
    wide1 = np.empty((size, rows), np.uint64)  # a slot's row is zeroed when a key takes it
    wide2 = np.empty((size, rows), np.uint64)
    used1 = np.empty(max_len, np.int64)
    used2 = np.empty(max_len, np.int64)
    for q in range(0, count, 2):
        # the longer string is the pattern (P) here, the shorter the text (T)
        i1, i2, two, T1, ts1, tlen1, P1, ps1, plen1, T2, ts2, tlen2, P2, ps2, plen2 = _two_lanes(
            a, b, idx, q, count, from_a, p_start, p_len, t_start, t_len
        )
        u1 = _set_bits(P1, ps1, plen1, 64, direct1, keys1, wide1, used1)
        u2 = _set_bits(P2, ps2, plen2, 64, direct2, keys2, wide2, used2)
        VP1 = _ALL << np.uint64(64 - k - 1)
        VN1 = _ZERO
        VP2 = VP1
        VN2 = _ZERO
        dist1 = np.int64(k)
        dist2 = np.int64(k)
        hor1 = _ONE << np.uint64(62)
        hor2 = hor1
        stop1 = k + tlen1 - (plen1 - k)  # the score can fall along the horizontal, not the diagonal
        stop2 = k + tlen2 - (plen2 - k)
        failed1 = False
        failed2 = False
        end1 = tlen1  # a pair that can no longer finish within k ends early
        end2 = tlen2
        # (lookups written out: a helper taking the arrays as arguments costs reference counting per call)
        i = 0
        # fast path: both pairs running, both still on the diagonal, no bounds to check
        fast = min(tlen1, tlen2, plen1 - k, plen2 - k) if two else 0
        while i < fast:
            start = i + k + 1
            w = start >> 6
            sh = np.uint64(start & 63)
            back = np.uint64(63) - sh
            cp = np.int64(T1[ts1 + i])
            X = _ZERO
            if cp < _DIRECT:
                X = (direct1[w, cp] >> sh) | ((direct1[w + 1, cp] << _ONE) << back)
            else:
                h = (cp * 0x9E3779B1) & wrap
                while keys1[h] != _EMPTY and keys1[h] != cp:
                    h = (h + 1) & wrap
                if keys1[h] == cp:
                    X = (wide1[h, w] >> sh) | ((wide1[h, w + 1] << _ONE) << back)
            D0, HP, HN, VP1, VN1 = _band_step(X, VP1, VN1)
            dist1 += np.int64(((D0 >> np.uint64(63)) & _ONE) ^ _ONE)
            cp = np.int64(T2[ts2 + i])
            X = _ZERO
            if cp < _DIRECT:
                X = (direct2[w, cp] >> sh) | ((direct2[w + 1, cp] << _ONE) << back)
            else:
                h = (cp * 0x9E3779B1) & wrap
                while keys2[h] != _EMPTY and keys2[h] != cp:
                    h = (h + 1) & wrap
                if keys2[h] == cp:
                    X = (wide2[h, w] >> sh) | ((wide2[h, w + 1] << _ONE) << back)
            D0, HP, HN, VP2, VN2 = _band_step(X, VP2, VN2)
            dist2 += np.int64(((D0 >> np.uint64(63)) & _ONE) ^ _ONE)
            i += 1
            if dist1 > stop1 or dist2 > stop2:
                break
        if dist1 > stop1:
            failed1 = True
            end1 = 0
        if dist2 > stop2:
            failed2 = True
            end2 = 0
        end = max(end1, end2, i)
        # the rest: one pair alone, the horizontal part at the end, early exits
        while i < end:
            start = i + k + 1  # first band position + 64
            w = start >> 6
            sh = np.uint64(start & 63)
            back = np.uint64(63) - sh
            if i < end1:
                cp = np.int64(T1[ts1 + i])
                X = _ZERO
                if cp < _DIRECT:
                    X = (direct1[w, cp] >> sh) | ((direct1[w + 1, cp] << _ONE) << back)
                else:
                    h = (cp * 0x9E3779B1) & wrap
                    while keys1[h] != _EMPTY and keys1[h] != cp:
                        h = (h + 1) & wrap
                    if keys1[h] == cp:
                        X = (wide1[h, w] >> sh) | ((wide1[h, w + 1] << _ONE) << back)
                D0, HP, HN, VP1, VN1 = _band_step(X, VP1, VN1)
                if i < plen1 - k:
                    dist1 += np.int64(((D0 >> np.uint64(63)) & _ONE) ^ _ONE)
                else:
                    dist1 += np.int64((HP & hor1) != _ZERO) - np.int64((HN & hor1) != _ZERO)
                    hor1 >>= _ONE
                if dist1 > stop1:
                    failed1 = True
                    end1 = 0
                    end = max(i + 1, end2)
            if i < end2:
                cp = np.int64(T2[ts2 + i])
                X = _ZERO
                if cp < _DIRECT:
                    X = (direct2[w, cp] >> sh) | ((direct2[w + 1, cp] << _ONE) << back)
                else:
                    h = (cp * 0x9E3779B1) & wrap
                    while keys2[h] != _EMPTY and keys2[h] != cp:
                        h = (h + 1) & wrap
                    if keys2[h] == cp:
                        X = (wide2[h, w] >> sh) | ((wide2[h, w + 1] << _ONE) << back)
                D0, HP, HN, VP2, VN2 = _band_step(X, VP2, VN2)
                if i < plen2 - k:
                    dist2 += np.int64(((D0 >> np.uint64(63)) & _ONE) ^ _ONE)
                else:
                    dist2 += np.int64((HP & hor2) != _ZERO) - np.int64((HN & hor2) != _ZERO)
                    hor2 >>= _ONE
                if dist2 > stop2:
                    failed2 = True
                    end2 = 0
                    end = max(i + 1, end1)
            i += 1
        out[i1] = -1 if failed1 or dist1 > k else dist1
        if two:
            out[i2] = -1 if failed2 or dist2 > k else dist2
        _clear_bits(P1, ps1, plen1, 64, direct1, keys1, used1, u1)
        _clear_bits(P2, ps2, plen2, 64, direct2, keys2, used2, u2)


@nb.njit(cache=True, nogil=True)
def _blocked(
    p: np.ndarray, p0: int, m: int, t: np.ndarray, t0: int, n: int,
    direct: np.ndarray, keys: np.ndarray, hashed: np.ndarray, used: np.ndarray,
    vp: np.ndarray, vn: np.ndarray, scores: np.ndarray, k: int,
) -> int:  # fmt: skip
    """Patterns longer than 64 characters: blocked Hyyrö with Ukkonen's band (see :func:`_banded_blocks`).

    Guess a bound k and compute only the blocks that cells within k of the diagonal touch. A result r <= k
    is exact. Otherwise r is still an upper bound of the distance, so a second pass with k = r is exact: at
    most two passes, the second only for dissimilar strings.
    """
    u = _set_bits(p, p0, m, 0, direct, keys, hashed, used)
    last = _ONE << np.uint64((m - 1) % 64)
    dist = _banded_blocks(p, p0, m, t, t0, n, direct, keys, hashed, vp, vn, scores, k, last)
    if dist > k:
        dist = _banded_blocks(p, p0, m, t, t0, n, direct, keys, hashed, vp, vn, scores, dist, last)
    _clear_bits(p, p0, m, 0, direct, keys, used, u)
    return dist


@nb.njit(cache=True, nogil=True)
def _banded_blocks(
    a: np.ndarray, a0: int, m: int, b: np.ndarray, b0: int, n: int,
    direct: np.ndarray, keys: np.ndarray, hashed: np.ndarray, vp: np.ndarray, vn: np.ndarray,
    scores: np.ndarray, k: int, last: np.uint64,
) -> int:  # fmt: skip
    """Blocked Hyyrö over the blocks within ``k`` of the diagonal; exact when the result is <= k.

    Cells outside the band are over-estimated (a new block starts at +1 per row, a dropped block's carry at
    +1 per column), never under-estimated, so no path through them can beat one of cost <= k.
    """
    words = (m + 63) // 64
    lo_off = max(0, m - n)  # rows within k of both the start and the end diagonal:
    hi_off = min(0, m - n)  # j - k + lo_off <= i <= j + k + hi_off
    first = 0
    lastb = min(words - 1, max(0, (k + hi_off + 1) // 64))
    for w in range(lastb + 1):
        vp[w] = _ALL
        vn[w] = _ZERO
        scores[w] = (w + 1) * 64 if w < words - 1 else m
    for j in range(n):
        cp = np.int64(b[b0 + j])
        use_direct = cp < _DIRECT
        found = True
        h = np.int64(0)
        if not use_direct:
            h = _slot(keys, cp)
            found = keys[h] == cp
        while first < lastb and (first + 1) * 64 < j - k + lo_off:
            first += 1
        hp_carry = _ONE
        hn_carry = _ZERO
        w = first
        target = min(words - 1, (j + k + hi_off + 1) // 64)
        while True:
            if w > lastb:  # a block enters the band: values below the previous block, +1 per row
                lastb = w
                vp[w] = _ALL
                vn[w] = _ZERO
                chars = 64 if w < words - 1 else (m - 1) % 64 + 1
                scores[w] = scores[w - 1] - np.int64(hp_carry) + np.int64(hn_carry) + chars
            if use_direct:
                X = direct[w, cp]
            elif found:
                X = hashed[h, w]
            else:
                X = _ZERO
            VP = vp[w]
            VN = vn[w]
            X = X | hn_carry
            D0 = (((X & VP) + VP) ^ VP) | X | VN
            HP = VN | ~(D0 | VP)
            HN = D0 & VP
            if w < words - 1:
                hp_out = HP >> np.uint64(63)
                hn_out = HN >> np.uint64(63)
            else:
                hp_out = _ONE if HP & last else _ZERO
                hn_out = _ONE if HN & last else _ZERO
            scores[w] += np.int64(hp_out) - np.int64(hn_out)
            HP = (HP << _ONE) | hp_carry
            HN = (HN << _ONE) | hn_carry
            hp_carry = hp_out
            hn_carry = hn_out
            vp[w] = HN | ~(D0 | HP)
            vn[w] = HP & D0
            if w >= target and w >= lastb:
                break
            w += 1
    return scores[words - 1]


@nb.njit(cache=True, nogil=True)
def _chunk_distances(
    a: np.ndarray, a_start: np.ndarray, a_end: np.ndarray,
    b: np.ndarray, b_start: np.ndarray, b_end: np.ndarray,
    out: np.ndarray, lo: int, hi: int,
) -> None:  # fmt: skip
    """Distances of pairs ``lo..hi``: strip common affixes, sort pairs by algorithm, run each group."""
    count = hi - lo
    from_a = np.empty(count, np.bool_)  # is the pattern (the shorter string) from ``a``?
    p_start = np.empty(count, np.int64)
    p_len = np.empty(count, np.int64)
    t_start = np.empty(count, np.int64)
    t_len = np.empty(count, np.int64)
    words = np.empty(count, np.int64)
    bands = np.empty(count, np.int64)
    blocks = np.empty(count, np.int64)
    res = np.empty(count, np.int64)
    n_words = 0
    n_bands = 0
    n_blocks = 0
    max_band = 1
    for j in range(count):
        a0 = a_start[lo + j]
        a1 = a_end[lo + j]
        b0 = b_start[lo + j]
        b1 = b_end[lo + j]
        while a0 < a1 and b0 < b1 and a[a0] == b[b0]:
            a0 += 1
            b0 += 1
        while a0 < a1 and b0 < b1 and a[a1 - 1] == b[b1 - 1]:
            a1 -= 1
            b1 -= 1
        m = a1 - a0
        n = b1 - b0
        from_a[j] = m <= n
        if m <= n:
            p_start[j], p_len[j], t_start[j], t_len[j] = a0, m, b0, n
        else:
            p_start[j], p_len[j], t_start[j], t_len[j] = b0, n, a0, m
            m, n = n, m
        if m == 0:
            res[j] = n
        elif m <= 64:
            words[n_words] = j
            n_words += 1
        elif n <= _SMALL_MAX_LEN and n - m <= _SMALL_K:
            bands[n_bands] = j
            n_bands += 1
            max_band = max(max_band, n)
        else:
            blocks[n_blocks] = j
            n_blocks += 1
    fresh = n_blocks  # blocks[fresh:] will be pairs the band found more than k apart
    if n_words:
        _single_words(a, b, words, n_words, from_a, p_start, p_len, t_start, t_len, res)
    if n_bands:
        _small_bands(a, b, bands, n_bands, from_a, p_start, p_len, t_start, t_len, res, max_band)
        for q in range(n_bands):
            if res[bands[q]] < 0:  # more than k apart
                blocks[n_blocks] = bands[q]
                n_blocks += 1
    if n_blocks:
        # scratch for the longest pattern; the hash table for the most code points >= _DIRECT in one
        # (counted only for long patterns: short ones get a table as large as the pattern)
        max_m = 1
        for q in range(n_blocks):
            max_m = max(max_m, p_len[blocks[q]])
        max_wide = max_m
        if max_m > 512:
            max_wide = 1
            for q in range(n_blocks):
                p, p0, m, _, _, _ = _lane(a, b, blocks[q], from_a, p_start, p_len, t_start, t_len)
                wide = 0
                for i in range(p0, p0 + m):
                    if p[i] >= _DIRECT:
                        wide += 1
                max_wide = max(max_wide, wide)
        n_w = (max_m + 63) // 64
        direct = np.zeros((n_w, _DIRECT), np.uint64)  # one contiguous 2 KiB row per block
        size = _table_size(max_wide)
        keys = np.full(size, _EMPTY, np.int64)
        hashed = np.empty((size, n_w), np.uint64)  # a slot's row is cleared when a key takes it
        used = np.empty(max_wide, np.int64)
        vp = np.empty(n_w, np.uint64)
        vn = np.empty(n_w, np.uint64)
        scores = np.empty(n_w, np.int64)
        for q in range(n_blocks):
            j = blocks[q]
            p, p0, m, t, t0, n = _lane(a, b, j, from_a, p_start, p_len, t_start, t_len)
            k = n - m + 16
            if q >= fresh and m <= _RETRY_FULL:  # more than _SMALL_K apart, few words: one full pass
                k = n + m
            res[j] = _blocked(p, p0, m, t, t0, n, direct, keys, hashed, used, vp, vn, scores, k)
    out[lo:hi] = res


@nb.njit(cache=True, nogil=True, parallel=True)
def _distances(
    a: np.ndarray, a_start: np.ndarray, a_end: np.ndarray,
    b: np.ndarray, b_start: np.ndarray, b_end: np.ndarray,
    chunks: int,
) -> np.ndarray:  # fmt: skip
    n = a_start.shape[0]
    out = np.empty(n, np.int64)
    step = (n + chunks - 1) // chunks
    for c in nb.prange(chunks):
        lo = c * step
        hi = min(n, lo + step)
        if lo < hi:
            _chunk_distances(a, a_start, a_end, b, b_start, b_end, out, lo, hi)
    return out


_REUSE_BYTES = 32 << 20  # per thread and side; larger batches get a fresh buffer that is not kept
_scratch = threading.local()


def _ucs4_scratch(side: int, count: int, width: int) -> np.ndarray:
    """A ``count`` x ``width`` UCS-4 array backed by this thread's buffer for ``side`` (grown as needed).

    Packing writes 4 bytes per character; a fresh array per call costs page faults on every batch, a kept
    one is written in place. Per thread, so concurrent callers never share it.
    """
    need = count * width * 4
    if need > _REUSE_BYTES:
        return np.empty(count, dtype=f"<U{width}")
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = [np.empty(0, np.uint32), np.empty(0, np.uint32)]
    if buffers[side].nbytes < need:
        buffers[side] = np.empty(max(need, 2 * buffers[side].nbytes) // 4, np.uint32)
    return buffers[side][: need // 4].view(f"<U{width}")


def _utf32(text: str) -> np.ndarray:
    """``text`` as a writable array of code points. Writable, like every buffer handed to the kernels: Numba
    types a read-only array (``np.frombuffer`` of bytes) apart, so such a buffer compiled the kernels again,
    after :func:`warm_up`, in the worker's first batch (on the H200 machine, 13.4 s of scoring for 8 batches
    that took ~0.3 s each once warm)."""
    return np.frombuffer(bytearray(text.encode("utf-32-le", "surrogatepass")), dtype=np.uint32)


def pack(strings: Sequence[str], side: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All strings as one UTF-32 code-point buffer plus start/end offsets, packed in one pass.

    Where lengths are similar, NumPy copies the strings into a fixed-width UCS-4 array (one C loop, padding
    ignored through the offsets). With ``side`` 0 or 1 that array reuses this thread's buffer for the side,
    so the result is valid only until the next call with the same side. A batch with very uneven lengths is
    joined and encoded once instead, so one long string never multiplies the memory of the short ones.
    """
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    total = int(lengths.sum())
    longest = int(lengths.max()) if len(strings) else 0
    if longest and longest * len(strings) <= 2 * total + 65_536:
        if side is None:
            fixed = np.array(strings, dtype=f"<U{longest}")
        else:
            fixed = _ucs4_scratch(side, len(strings), longest)
            fixed[:] = strings
        starts = np.arange(len(strings), dtype=np.int64) * longest
        return fixed.view(np.uint32).reshape(-1), starts, starts + lengths
    ends = np.cumsum(lengths)
    return _utf32("".join(strings)), ends - lengths, ends


_SERIAL_CHARS = 32_768  # below this many characters in a call, one thread: waking the pool costs more


def _run(
    a: np.ndarray, a_start: np.ndarray, a_end: np.ndarray,
    b: np.ndarray, b_start: np.ndarray, b_end: np.ndarray, chars: int | None = None, parallel: bool = True,
) -> np.ndarray:  # fmt: skip
    """All pairs; in parallel (``prange`` over chunks) unless the call is small (``chars`` in all, if known)
    or ``parallel`` is False.

    Small calls (a novelty check: one output against 32 recent ones) run on the calling thread: a parallel
    region would wake every Numba thread for a few microseconds of work each, and in the worker those
    threads would fight the embedding model's threads for the cores (measured: the worker's novelty took
    1.8x its share of the event loop when it ran in parallel beside a busy encoder).
    """
    n = a_start.shape[0]
    if chars is None:
        chars = int((a_end - a_start).sum() + (b_end - b_start).sum())
    if chars < _SERIAL_CHARS or not parallel:
        out = np.empty(n, np.int64)
        _chunk_distances(a, a_start, a_end, b, b_start, b_end, out, 0, n)
        return out
    return _distances(a, a_start, a_end, b, b_start, b_end, max(1, min(n, nb.get_num_threads() * 2)))


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
    xbuf = _utf32(x)
    n = len(candidates)
    bbuf, bstart, bend = pack(candidates, 1)
    starts = np.zeros(n, np.int64)
    ends = np.full(n, len(x), np.int64)
    return _run(xbuf, starts, ends, bbuf, bstart, bend, n * len(x) + sum(map(len, candidates)))


def distance_index_pairs(strings: Sequence[str], i: np.ndarray, j: np.ndarray, parallel: bool = True) -> np.ndarray:
    """Distance of ``strings[i[k]]`` and ``strings[j[k]]`` for each k; every string is packed once.

    For many pairs among few strings (novelty of a batch: each output against the 32 before it), packing
    each pair's strings again would cost more than the distances. ``parallel=False`` keeps the call on the
    calling thread (see :func:`_run`).

    >>> distance_index_pairs(["kitten", "sitting", "mitten"], np.array([0, 0]), np.array([1, 2])).tolist()
    [3, 1]
    """
    i = np.asarray(i, np.int64)
    j = np.asarray(j, np.int64)
    if i.shape != j.shape:
        raise ValueError(f"i and j must have the same length ({i.shape[0]} != {j.shape[0]})")
    if not i.size:
        return np.empty(0, np.int64)
    buf, start, end = pack(strings)
    chars = int((end[i] - start[i]).sum() + (end[j] - start[j]).sum())
    return _run(buf, start[i], end[i], buf, start[j], end[j], chars, parallel)


def _token_ids(texts: Sequence[str], vocab: dict[str, int]) -> list[np.ndarray]:
    out = []
    for text in texts:
        out.append(np.fromiter((vocab.setdefault(t, len(vocab)) for t in text.split()), dtype=np.uint32))
    return out


def _pack_ids(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    ends = np.cumsum(lengths)
    buf = np.concatenate(seqs) if seqs else np.empty(0, np.uint32)
    return buf.astype(np.uint32, copy=False), ends - lengths, ends


def word_distance_pairs(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Word-level Levenshtein distance (tokens split on whitespace, mapped to exact integer ids)."""
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length ({len(a)} != {len(b)})")
    if not a:
        return np.empty(0, np.int64)
    vocab: dict[str, int] = {}
    abuf, astart, aend = _pack_ids(_token_ids(a, vocab))
    bbuf, bstart, bend = _pack_ids(_token_ids(b, vocab))
    return _run(abuf, astart, aend, bbuf, bstart, bend)


def word_distance_one_to_many(x: str, candidates: Sequence[str]) -> np.ndarray:
    """Word-level distance from ``x`` to each candidate."""
    return word_distance_pairs([x] * len(candidates), candidates)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel specialisation the worker uses."""
    distance_pairs(["warm-up", "é" * 70], ["warm up", "e" * 70])
    word_distance_pairs(["warm up now"], ["warm now"])
    a, start, end = pack(["warm-up", "é" * 70])
    _distances(a, start, end, a, start[::-1].copy(), end[::-1].copy(), 1)  # the parallel form of large calls
