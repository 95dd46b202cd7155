"""The compiled kernels (Numba): one pair on the calling thread, chunks of pairs in parallel.

Read :mod:`metrics.levenshtein` for the algorithm and the public functions; strings reach these kernels
packed by :mod:`metrics.levenshtein.packing`.
"""

from __future__ import annotations

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
# blocks instead of a narrow guess and a second pass (dissimilar novelty pairs mostly fail the guess); for
# longer patterns the narrow guess still pays.
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


@nb.njit(cache=True, nogil=True, inline="always")
def _block_step(
    X: np.uint64, VP: np.uint64, VN: np.uint64, hp_carry: np.uint64, hn_carry: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """One text character in one block of the blocked algorithm, with the carries from the block above: HP and
    HN before the shift (their top bits carry on; the caller reads the score from them), the new VP and VN."""
    X = X | hn_carry
    D0 = (((X & VP) + VP) ^ VP) | X | VN
    HP = VN | ~(D0 | VP)
    HN = D0 & VP
    shifted_hp = (HP << _ONE) | hp_carry
    shifted_hn = (HN << _ONE) | hn_carry
    return HP, HN, shifted_hn | ~(D0 | shifted_hp), shifted_hp & D0


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
    vp: np.ndarray, vn: np.ndarray, scores: np.ndarray, k: int, counts: np.ndarray,
) -> int:  # fmt: skip
    """Patterns longer than 64 characters: blocked Hyyrö with Ukkonen's band (see :func:`_banded_blocks`).

    Guess a bound k and compute only the blocks that cells within k of the diagonal touch. A result r <= k
    is exact. Otherwise r is still an upper bound of the distance, so a second pass with k = r is exact: at
    most two passes, the second only for dissimilar strings. When a lower bound of the distance
    (:func:`_bag_bound`) rules the guess out and is over an eighth of the pattern's length, the strings are
    unrelated (novelty candidates; real user edits stay far below) and one pass over all blocks replaces both:
    the narrow pass would be wasted work, and so would a second band nearly as wide as the matrix.
    """
    if not _band_holds_all(k, m, n):
        bound = _bag_bound(p, p0, m, t, t0, n, counts)
        if bound > k and 8 * bound > m:
            k = n + m
    u = _set_bits(p, p0, m, 0, direct, keys, hashed, used)
    last = _ONE << np.uint64((m - 1) % 64)
    if _band_holds_all(k, m, n):
        dist = _full_blocks(p, p0, m, t, t0, n, direct, keys, hashed, vp, vn, last)
    else:
        dist = _banded_blocks(p, p0, m, t, t0, n, direct, keys, hashed, vp, vn, scores, k, last)
        if dist > k:
            if _band_holds_all(dist, m, n):
                dist = _full_blocks(p, p0, m, t, t0, n, direct, keys, hashed, vp, vn, last)
            else:
                dist = _banded_blocks(p, p0, m, t, t0, n, direct, keys, hashed, vp, vn, scores, dist, last)
    _clear_bits(p, p0, m, 0, direct, keys, used, u)
    return dist


@nb.njit(cache=True, nogil=True)
def _bag_bound(p: np.ndarray, p0: int, m: int, t: np.ndarray, t0: int, n: int, counts: np.ndarray) -> int:
    """A lower bound of the edit distance: the bag distance of the two strings with code points folded into
    256 classes (each edit changes the character counts by at most one on each side; folding only merges
    counts). ``counts`` (256 zeros) is left zeroed."""
    for i in range(m):
        counts[p[p0 + i] & 255] += 1
    for i in range(n):
        counts[t[t0 + i] & 255] -= 1
    extra = 0
    missing = 0
    for c in range(_DIRECT):
        d = counts[c]
        if d > 0:
            extra += d
        else:
            missing -= d
        counts[c] = 0
    return max(extra, missing)


@nb.njit(cache=True, nogil=True, inline="always")
def _band_holds_all(k: int, m: int, n: int) -> bool:
    """Whether the band of ``k`` (about 2k + n - m rows wide) would hold every block of an ``m``-row pattern."""
    return (2 * k + n - m) // 64 + 2 >= (m + 63) // 64


@nb.njit(cache=True, nogil=True, inline="always")
def _text_slot(cp: np.int64, keys: np.ndarray) -> np.int64:
    """Where a text character's pattern bits are: -1 in ``direct`` (below 256), a slot of ``hashed``, or -2
    for a character the pattern does not hold (no bits). The callers read the bits in a conditional
    expression: the same choice in an inlined helper with several returns made the loop ten times slower."""
    if cp < _DIRECT:
        return np.int64(-1)
    h = _slot(keys, cp)
    return h if keys[h] == cp else np.int64(-2)


@nb.njit(cache=True, nogil=True)
def _full_blocks(
    a: np.ndarray, a0: int, m: int, b: np.ndarray, b0: int, n: int,
    direct: np.ndarray, keys: np.ndarray, hashed: np.ndarray, vp: np.ndarray, vn: np.ndarray, last: np.uint64,
) -> int:  # fmt: skip
    """Blocked Hyyrö over every block of every column, for pairs so unlike that a band would cover them all:
    none of the band's bookkeeping, only the last block's score kept.

    Two text columns at a time, as a wavefront: block w of column j and block w - 1 of column j + 1 in the
    same iteration. Within a column each block waits for the carry of the block above (a chain of dependent
    operations); the two columns' chains are independent, so the CPU runs them side by side.
    """
    words = (m + 63) // 64
    for w in range(words):
        vp[w] = _ALL
        vn[w] = _ZERO
    score = np.int64(m)
    lw = words - 1
    j = 0
    while j + 1 < n:
        cp1 = np.int64(b[b0 + j])
        cp2 = np.int64(b[b0 + j + 1])
        h1 = _text_slot(cp1, keys)
        h2 = _text_slot(cp2, keys)
        HP, HN, vp[0], vn[0] = _block_step(
            (direct[0, cp1] if h1 == -1 else (hashed[h1, 0] if h1 >= 0 else _ZERO)), vp[0], vn[0], _ONE, _ZERO
        )
        if lw == 0:
            score += np.int64((HP & last) != _ZERO) - np.int64((HN & last) != _ZERO)
        hp1 = HP >> np.uint64(63)
        hn1 = HN >> np.uint64(63)
        hp2 = _ONE
        hn2 = _ZERO
        for w in range(1, words):
            HP1, HN1, vp1, vn1 = _block_step(
                (direct[w, cp1] if h1 == -1 else (hashed[h1, w] if h1 >= 0 else _ZERO)), vp[w], vn[w], hp1, hn1
            )
            HP2, HN2, vp2, vn2 = _block_step(
                (direct[w - 1, cp2] if h2 == -1 else (hashed[h2, w - 1] if h2 >= 0 else _ZERO)),
                vp[w - 1],
                vn[w - 1],
                hp2,
                hn2,
            )
            vp[w], vn[w], vp[w - 1], vn[w - 1] = vp1, vn1, vp2, vn2
            hp1 = HP1 >> np.uint64(63)
            hn1 = HN1 >> np.uint64(63)
            hp2 = HP2 >> np.uint64(63)
            hn2 = HN2 >> np.uint64(63)
            if w == lw:
                score += np.int64((HP1 & last) != _ZERO) - np.int64((HN1 & last) != _ZERO)
        HP, HN, vp[lw], vn[lw] = _block_step(
            (direct[lw, cp2] if h2 == -1 else (hashed[h2, lw] if h2 >= 0 else _ZERO)), vp[lw], vn[lw], hp2, hn2
        )
        score += np.int64((HP & last) != _ZERO) - np.int64((HN & last) != _ZERO)
        j += 2
    if j < n:  # an odd column left
        cp = np.int64(b[b0 + j])
        h = _text_slot(cp, keys)
        hp = _ONE
        hn = _ZERO
        for w in range(words):
            HP, HN, vp[w], vn[w] = _block_step(
                (direct[w, cp] if h == -1 else (hashed[h, w] if h >= 0 else _ZERO)), vp[w], vn[w], hp, hn
            )
            hp = HP >> np.uint64(63)
            hn = HN >> np.uint64(63)
        score += np.int64((HP & last) != _ZERO) - np.int64((HN & last) != _ZERO)
    return int(score)


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
            HP, HN, vp[w], vn[w] = _block_step(X, vp[w], vn[w], hp_carry, hn_carry)
            if w < words - 1:
                hp_carry = HP >> np.uint64(63)
                hn_carry = HN >> np.uint64(63)
            else:
                hp_carry = _ONE if HP & last else _ZERO
                hn_carry = _ONE if HN & last else _ZERO
            scores[w] += np.int64(hp_carry) - np.int64(hn_carry)
            if w >= target and w >= lastb:
                break
            w += 1
    return scores[words - 1]


@nb.njit(cache=True, nogil=True)
def chunk_distances(
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
        counts = np.zeros(_DIRECT, np.int64)
        for q in range(n_blocks):
            j = blocks[q]
            p, p0, m, t, t0, n = _lane(a, b, j, from_a, p_start, p_len, t_start, t_len)
            k = n - m + 16
            if q >= fresh and m <= _RETRY_FULL:  # more than _SMALL_K apart, few words: one full pass
                k = n + m
            res[j] = _blocked(p, p0, m, t, t0, n, direct, keys, hashed, used, vp, vn, scores, k, counts)
    out[lo:hi] = res


@nb.njit(cache=True, nogil=True, parallel=True)
def parallel_distances(
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
            chunk_distances(a, a_start, a_end, b, b_start, b_end, out, lo, hi)
    return out
