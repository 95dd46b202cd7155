"""Exact Levenshtein distance, bit-parallel, compiled with Numba (Myers 1999 / Hyyrö 2003).

The shorter string of a pair is the *pattern*: a bitmask per character marks where it occurs. Every character
of the longer string then updates all pattern positions at once with a few 64-bit operations, so a pair costs
``ceil(m / 64) * n`` word operations instead of ``m * n`` cells; patterns longer than 64 characters use the
blocked variant (one 64-bit word per block, carries passed from block to block). Common prefixes and suffixes
are stripped first.

Characters are Unicode code points (strings are packed as UTF-32 in one pass), so ``"é"`` and ``"e\\u0301"``
differ, as in :mod:`rapidfuzz`. Word level: tokens are hashed to 64-bit integers and the same kernel runs on
the token sequences.

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


@nb.njit(cache=True, nogil=True, inline="always")
def _slot(keys: np.ndarray, cp: np.int64) -> np.int64:
    """Slot of code point ``cp`` in the open-addressing table ``keys`` (-1 = free), or where it would go."""
    mask = keys.shape[0] - 1
    h = (cp * 0x9E3779B1) & mask
    while keys[h] != _EMPTY and keys[h] != cp:
        h = (h + 1) & mask
    return h


@nb.njit(cache=True, nogil=True)
def _lev_core(
    a: np.ndarray, a0: int, a1: int, b: np.ndarray, b0: int, b1: int,
    direct: np.ndarray, keys: np.ndarray, hashed: np.ndarray, vp: np.ndarray, vn: np.ndarray,
    scores: np.ndarray,
) -> int:  # fmt: skip
    # strip common prefix and suffix
    while a0 < a1 and b0 < b1 and a[a0] == b[b0]:
        a0 += 1
        b0 += 1
    while a0 < a1 and b0 < b1 and a[a1 - 1] == b[b1 - 1]:
        a1 -= 1
        b1 -= 1
    m = a1 - a0
    n = b1 - b0
    if m > n:  # the pattern is the shorter string
        a, b = b, a
        a0, b0 = b0, a0
        a1, b1 = b1, a1
        m, n = n, m
    if m == 0:
        return n
    small = m > 64 and n <= _SMALL_MAX_LEN and n - m <= _SMALL_K
    if small:  # the longer string is the pattern, slid along the diagonal one word at a time
        a, b = b, a
        a0, b0 = b0, a0
        m, n = n, m
    words = (m + 63) // 64
    # build the pattern's bitmasks
    wide = 0
    for i in range(m):
        cp = np.int64(a[a0 + i])
        w = i // 64
        bit = _ONE << np.uint64(i % 64)
        if cp < _DIRECT:
            direct[w, cp] |= bit
        else:
            wide += 1
            h = _slot(keys, cp)
            keys[h] = cp
            hashed[h, w] |= bit
    last = _ONE << np.uint64((m - 1) % 64)
    dist = m
    if words == 1:
        VP = _ALL
        VN = _ZERO
        for j in range(n):
            cp = np.int64(b[b0 + j])
            if cp < _DIRECT:
                X = direct[0, cp]
            else:
                h = _slot(keys, cp)
                X = hashed[h, 0] if keys[h] == cp else _ZERO
            D0 = (((X & VP) + VP) ^ VP) | X | VN
            HP = VN | ~(D0 | VP)
            HN = D0 & VP
            if HP & last:
                dist += 1
            if HN & last:
                dist -= 1
            HP = (HP << _ONE) | _ONE
            HN = HN << _ONE
            VP = HN | ~(D0 | HP)
            VN = HP & D0
    else:
        # Ukkonen band: guess a bound k and compute only the blocks that cells within k of the diagonal touch.
        # A result r <= k is exact. Otherwise r is still an upper bound of the distance, so a second pass with
        # k = r is exact: at most two passes, the second only for dissimilar strings.
        dist = _small_band(a, a0, m, b, b0, n, direct, keys, hashed, _SMALL_K) if small else _SMALL_K + 1
        if dist > _SMALL_K:
            k = abs(n - m) + 16
            dist = _banded_blocks(a, a0, m, b, b0, n, direct, keys, hashed, vp, vn, scores, k, last)
            if dist > k:
                dist = _banded_blocks(a, a0, m, b, b0, n, direct, keys, hashed, vp, vn, scores, dist, last)
    # reset only what was set, so the scratch is reusable without a full clear
    if m >= 2 * _DIRECT * words // 64:  # clearing the used rows is cheaper than m scattered writes
        direct[:words, :] = _ZERO
    else:
        for i in range(m):
            cp = np.int64(a[a0 + i])
            if cp < _DIRECT:
                direct[i // 64, cp] = _ZERO
    if wide:
        for i in range(m):
            cp = np.int64(a[a0 + i])
            if cp >= _DIRECT:
                hashed[_slot(keys, cp), i // 64] = _ZERO
        for i in range(m):
            cp = np.int64(a[a0 + i])
            if cp >= _DIRECT:
                h = _slot(keys, cp)
                if keys[h] == cp:
                    keys[h] = _EMPTY
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
def _small_band(
    p: np.ndarray, p0: int, plen: int, t: np.ndarray, t0: int, tlen: int,
    direct: np.ndarray, keys: np.ndarray, hashed: np.ndarray, k: int,
) -> int:  # fmt: skip
    """Hyyrö's banded variant: the 2k+1 diagonal cells of each column in one word (pattern = longer string).

    Exact when the distance is <= k (k <= 31, k >= plen - tlen); returns k + 1 otherwise.
    """
    words = (plen + 63) // 64
    VP = _ALL << np.uint64(64 - k - 1)
    VN = _ZERO
    dist = k
    diagonal = _ONE << np.uint64(63)
    horizontal = _ONE << np.uint64(62)
    start = k + 1 - 64
    break_score = k + tlen - (plen - k)
    for i in range(tlen):
        cp = np.int64(t[t0 + i])
        # the pattern bits of cp at positions start..start+63 (lookups written out: a helper taking the
        # arrays as arguments costs reference counting on every call, 20x slower here)
        h = np.int64(0)
        found = cp < _DIRECT
        if not found:
            mask = keys.shape[0] - 1
            h = (cp * 0x9E3779B1) & mask
            while keys[h] != _EMPTY and keys[h] != cp:
                h = (h + 1) & mask
            found = keys[h] == cp
        if not found:
            X = _ZERO
        elif start < 0:
            X = (direct[0, cp] if cp < _DIRECT else hashed[h, 0]) << np.uint64(-start)
        else:
            w = start >> 6
            pos = start & 63
            X = (direct[w, cp] if cp < _DIRECT else hashed[h, w]) >> np.uint64(pos)
            if w + 1 < words and pos != 0:
                X |= (direct[w + 1, cp] if cp < _DIRECT else hashed[h, w + 1]) << np.uint64(64 - pos)
        D0 = (((X & VP) + VP) ^ VP) | X | VN
        HP = VN | ~(D0 | VP)
        HN = D0 & VP
        if i < plen - k:
            if not (D0 & diagonal):
                dist += 1
        else:
            if HP & horizontal:
                dist += 1
            if HN & horizontal:
                dist -= 1
            horizontal >>= _ONE
        if dist > break_score:
            return k + 1
        VP = HN | ~((D0 >> _ONE) | HP)
        VN = (D0 >> _ONE) & HP
        start += 1
    return dist if dist <= k else k + 1


@nb.njit(cache=True, nogil=True)
def _table_size(max_len: int) -> int:
    size = 16
    while size < 2 * max_len + 2:
        size *= 2
    return size


@nb.njit(cache=True, nogil=True)
def _chunk_distances(
    a: np.ndarray, a_start: np.ndarray, a_end: np.ndarray,
    b: np.ndarray, b_start: np.ndarray, b_end: np.ndarray,
    out: np.ndarray, lo: int, hi: int,
) -> None:  # fmt: skip
    # size the scratch for this chunk: longest pattern (shorter side); for long patterns also the most code
    # points >= _DIRECT in one (short ones just get a table as large as the pattern)
    max_m = 1
    for i in range(lo, hi):
        la = a_end[i] - a_start[i]
        lb = b_end[i] - b_start[i]
        m = min(la, lb)
        if m > 64 and max(la, lb) <= _SMALL_MAX_LEN and abs(la - lb) <= _SMALL_K:
            m = max(la, lb)  # the small band uses the longer string as the pattern
        if m > max_m:
            max_m = m
    max_wide = max_m
    if max_m > 512:
        max_wide = 1
        for i in range(lo, hi):
            la = a_end[i] - a_start[i]
            lb = b_end[i] - b_start[i]
            wide_a = 0
            for k in range(a_start[i], a_end[i]):
                if a[k] >= _DIRECT:
                    wide_a += 1
            wide_b = 0
            for k in range(b_start[i], b_end[i]):
                if b[k] >= _DIRECT:
                    wide_b += 1
            max_wide = max(max_wide, wide_a, wide_b)
    words = (max_m + 63) // 64
    direct = np.zeros((words, _DIRECT), np.uint64)  # one contiguous 2 KiB row per block
    size = _table_size(max_wide)
    keys = np.full(size, _EMPTY, np.int64)
    hashed = np.zeros((size, words), np.uint64)
    vp = np.empty(words, np.uint64)
    vn = np.empty(words, np.uint64)
    scores = np.empty(words, np.int64)
    for i in range(lo, hi):
        out[i] = _lev_core(a, a_start[i], a_end[i], b, b_start[i], b_end[i], direct, keys, hashed, vp, vn, scores)


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


def pack(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All strings as one UTF-32 code-point buffer plus start/end offsets, packed in one pass.

    Where lengths are similar, NumPy copies the strings into a fixed-width UCS-4 array (one C loop, padding
    ignored through the offsets); a batch with very uneven lengths is joined and encoded once instead, so one
    long string never multiplies the memory of the short ones.
    """
    lengths = np.array(list(map(len, strings)), dtype=np.int64)
    total = int(lengths.sum())
    longest = int(lengths.max()) if len(strings) else 0
    if longest and longest * len(strings) <= 2 * total + 65_536:
        buf = np.array(strings, dtype=f"<U{longest}").view(np.uint32).reshape(-1)
        starts = np.arange(len(strings), dtype=np.int64) * longest
        return buf, starts, starts + lengths
    ends = np.cumsum(lengths)
    buf = np.frombuffer("".join(strings).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return buf, ends - lengths, ends


def _chunks(n: int) -> int:
    return max(1, min(n, nb.get_num_threads() * 2))


def distance_pairs(a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """Character-level Levenshtein distance of each pair ``(a[i], b[i])``, as int64."""
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length ({len(a)} != {len(b)})")
    if not a:
        return np.empty(0, np.int64)
    abuf, astart, aend = pack(a)
    bbuf, bstart, bend = pack(b)
    return _distances(abuf, astart, aend, bbuf, bstart, bend, _chunks(len(a)))


def distance_one_to_many(x: str, candidates: Sequence[str]) -> np.ndarray:
    """Distance from ``x`` to each candidate (novelty: compare a new output with recent ones)."""
    if not candidates:
        return np.empty(0, np.int64)
    xbuf, _, _ = pack([x])
    n = len(candidates)
    bbuf, bstart, bend = pack(candidates)
    starts = np.zeros(n, np.int64)
    ends = np.full(n, len(x), np.int64)
    return _distances(xbuf, starts, ends, bbuf, bstart, bend, _chunks(n))


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
    return _distances(abuf, astart, aend, bbuf, bstart, bend, _chunks(len(a)))


def word_distance_one_to_many(x: str, candidates: Sequence[str]) -> np.ndarray:
    """Word-level distance from ``x`` to each candidate."""
    return word_distance_pairs([x] * len(candidates), candidates)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel specialisation the worker uses."""
    distance_pairs(["warm-up", "é" * 70], ["warm up", "e" * 70])
    word_distance_pairs(["warm up now"], ["warm now"])
