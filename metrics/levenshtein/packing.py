"""Strings into the flat code-point buffers the kernels read: every string of a call packed in one pass."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

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


def utf32(text: str) -> np.ndarray:
    """``text`` as a writable array of code points. Writable, like every buffer handed to the kernels: Numba
    types a read-only array (``np.frombuffer`` of bytes) apart, so such a buffer compiled the kernels again,
    after :func:`warm_up`, in the worker's first batch: seconds of compilation there."""
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
    return utf32("".join(strings)), ends - lengths, ends


def token_ids(texts: Sequence[str], vocab: dict[str, int]) -> list[np.ndarray]:
    out = []
    for text in texts:
        out.append(np.fromiter((vocab.setdefault(t, len(vocab)) for t in text.split()), dtype=np.uint32))
    return out


def pack_ids(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    ends = np.cumsum(lengths)
    buf = np.concatenate(seqs) if seqs else np.empty(0, np.uint32)
    return buf.astype(np.uint32, copy=False), ends - lengths, ends
