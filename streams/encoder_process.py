"""The embedding model in a child process of the worker, so that it never shares a GIL with the event loop.

In the worker's process the model's threads and the event loop take turns on one GIL: the ONNX threads need it
between model runs, and on CUDA every operator of the forward pass is launched from Python. The busier the
event loop (parsing, joining, table writes, Parquet), the longer the model waits for it, and the faster the
model, the more that costs. :class:`EncoderProcess` loads the encoder (:func:`metrics.encoder.load_encoder`) in
a child process started with ``spawn`` and forwards each ``encode`` call through a pipe: texts go out, float32
vectors come back. It has the :class:`metrics.encoder.Encoder` interface, so the worker's cache
(:class:`metrics.embedding_cache.CachedEncoder`) wraps it like any encoder and only its misses cross the pipe.

Failure handling:

- a load error in the child (no model package, a bad backend) is raised by :meth:`EncoderProcess.start` in the
  parent, with the child's message;
- an error while encoding is raised in the parent as :class:`EncoderProcessError` with the child's message; the
  child keeps serving;
- if the child dies, the call raises :class:`EncoderProcessError` with its exit code and the next call starts
  a new child (the worker then encodes that batch's generations one by one: see ``streams.worker``);
- the child ignores SIGINT (a Ctrl+C reaches the whole process group: the worker stops it itself) and exits as
  soon as the parent's end of the pipe closes, also when the parent was killed.

Example::

    >>> enc = EncoderProcess.start("onnx-int8")                      # doctest: +SKIP
    >>> enc.encode(["The cat sat on the mat."]).shape                # doctest: +SKIP
    (1, 384)
    >>> enc.close()                                                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from metrics.encoder import Backend, ModelNotFoundError, load_encoder

log = logging.getLogger("evalstream.encoder_process")


class EncoderProcessError(RuntimeError):
    """The encoder process failed a call, or died."""


def _serve(conn: Connection, options: dict[str, Any], log_level: int) -> None:
    """The child: load the encoder, say so, then answer ``encode`` requests until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="[%(asctime)s] [encoder process] %(levelname)s %(message)s")
    try:
        encoder = load_encoder(**options)
    except BaseException as exc:
        conn.send(("error", type(exc).__name__, str(exc), traceback.format_exc()))
        return
    conn.send(("ready", encoder.name, encoder.dim))
    while True:
        try:
            texts = conn.recv()
        except (EOFError, OSError):  # the parent closed its end, or died
            return
        try:
            reply: tuple[Any, ...] = ("ok", np.ascontiguousarray(encoder.encode(texts), dtype=np.float32))
        except Exception as exc:
            reply = ("error", type(exc).__name__, str(exc), traceback.format_exc())
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):  # the parent died while this call was being encoded
            return


class EncoderProcess:
    """An encoder running in a child process (see the module docstring); one call at a time.

    Use :meth:`start`, which waits until the model is loaded. ``options`` are :func:`load_encoder`'s arguments.
    """

    def __init__(self, options: dict[str, Any], start_timeout_s: float = 600.0) -> None:
        self.options = options
        self.start_timeout_s = start_timeout_s
        self.name = ""
        self.dim = 0
        self.starts = 0  # children started (1 + restarts after a death)
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None

    @classmethod
    def start(
        cls,
        backend: Backend = "auto",
        cache_dir: Path | None = None,
        batch_size: int | None = None,
        int8_min_tokens: int = 64,
        threads: int = 0,
        start_timeout_s: float = 600.0,
    ) -> EncoderProcess:
        """Start the child and wait for its encoder; raises what loading it raised (e.g. ModelNotFoundError)."""
        options = {
            "backend": backend,
            "cache_dir": cache_dir,
            "batch_size": batch_size,
            "int8_min_tokens": int8_min_tokens,
            "threads": threads,
        }
        enc = cls(options, start_timeout_s)
        with enc._lock:
            enc._spawn()
        return enc

    @property
    def pid(self) -> int | None:
        return None if self._process is None else int(self._process.pid)

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and an event loop
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=_serve,
            args=(child, self.options, logging.getLogger().getEffectiveLevel()),
            name="evalstream-encoder",
            daemon=True,
        )
        process.start()
        child.close()  # only the child holds its end: when the child dies, recv() here sees EOF
        self.starts += 1
        try:
            if not parent.poll(self.start_timeout_s):
                raise EncoderProcessError(f"the encoder process did not load the model in {self.start_timeout_s:.0f}s")
            reply = parent.recv()
        except EOFError:
            process.join(5)
            raise EncoderProcessError(
                f"the encoder process exited while loading the model (exit code {process.exitcode})"
            ) from None
        except BaseException:
            process.kill()
            parent.close()
            raise
        if reply[0] != "ready":
            parent.close()
            process.join(5)
            _, kind, message, trace = reply
            log.debug("encoder process failed to start:\n%s", trace)
            if kind == "ModelNotFoundError":
                raise ModelNotFoundError(message)
            if kind == "ValueError":
                raise ValueError(message)
            raise EncoderProcessError(f"the encoder process failed to load the model: {kind}: {message}")
        _, name, dim = reply
        if self.name and (name, dim) != (self.name, self.dim):
            log.warning("the restarted encoder process runs %s (%d), not %s (%d)", name, dim, self.name, self.dim)
        self.name, self.dim = name, int(dim)
        self._process, self._conn = process, parent
        log.info("encoder process %d ready: %s", process.pid, name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            if self._conn is None:
                log.warning("starting a new encoder process (the previous one died)")
                self._spawn()
            conn = self._conn
            assert conn is not None
            try:
                conn.send(list(texts))
                reply = conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                code = self._reap()
                raise EncoderProcessError(f"the encoder process died (exit code {code})") from None
        if reply[0] == "ok":
            vectors: np.ndarray = reply[1]
            if vectors.shape != (len(texts), self.dim):
                raise EncoderProcessError(f"the encoder process returned shape {vectors.shape} for {len(texts)} texts")
            return vectors
        _, kind, message, _ = reply
        raise EncoderProcessError(f"encoding failed in the encoder process: {kind}: {message}")

    def _reap(self) -> int | None:
        """Forget a dead child (the next call starts another); its exit code."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        process, self._process = self._process, None
        if process is None:
            return None
        process.join(5)
        if process.exitcode is None:
            process.kill()
            process.join(5)
        return process.exitcode  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the child (it exits when its pipe closes); idempotent."""
        with self._lock:
            self._reap()

    def __enter__(self) -> EncoderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
