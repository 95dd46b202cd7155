"""The embedding model in a child process of the worker, so that it never shares a GIL with the event loop.

In the worker's process the model's threads and the event loop take turns on one GIL: the ONNX threads need it
between model runs, and on CUDA every operator of the forward pass is launched from Python. The busier the
event loop (parsing, joining, table writes, Parquet), the longer the model waits for it, and the faster the
model, the more that costs. :class:`EncoderProcess` loads the encoder
(:func:`streams.embedding.encoder.load_encoder`) in a child process started with ``spawn`` and forwards each
``encode`` call through a pipe (:mod:`streams.embedding.protocol`: texts out, float32 vectors back). It has the
:class:`streams.embedding.model.Encoder` interface, so the worker's cache
(:class:`streams.embedding.cache.CachedEncoder`) wraps it like any encoder and only its misses cross the pipe.

Failure handling:

- a load error in the child (no model package, a bad backend) is raised by :meth:`EncoderProcess.start` in the
  parent, as the same exception type with the child's message;
- an error while encoding is raised in the parent as :class:`RemoteEncoderError` with the child's message; the
  child keeps serving;
- if the child dies, the call raises :class:`RemoteEncoderError` with its exit code and the next call starts a
  new child (the worker then encodes that batch again: see
  ``streams.worker.embedding_scores.EmbeddingStage.finish``);
- the child ignores SIGINT (a Ctrl+C reaches the whole process group: the worker stops it itself) and exits as
  soon as the parent's end of the pipe closes, also when the parent was killed.

Usage (the child loads the model package; ``tests/streams/embedding`` runs it)::

    enc = EncoderProcess.start("onnx-int8")
    enc.encode(["The cat sat on the mat."]).shape   # (1, 384)
    enc.close()
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from streams.embedding.encoder import Backend, load_encoder
from streams.embedding.protocol import RemoteEncoder, RemoteEncoderError, send_error, send_ready, serve_connection

log = logging.getLogger("evalstream.encoder_process")


def _child(conn: Connection, options: dict[str, Any], log_level: int) -> None:
    """The child: load the encoder, say so (or why not), then answer requests until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="[%(asctime)s] [encoder process] %(levelname)s %(message)s")
    try:
        encoder = load_encoder(**options)
    except BaseException as exc:  # every load failure is reported to the parent
        send_error(conn, exc)
        return
    send_ready(conn, encoder.name, encoder.dim)
    serve_connection(conn, encoder)


class EncoderProcess(RemoteEncoder):
    """An encoder running in a child process (see the module docstring). Use :meth:`start`.

    ``options`` are :func:`streams.embedding.encoder.load_encoder`'s arguments.
    """

    def __init__(self, options: dict[str, Any], start_timeout_s: float = 600.0) -> None:
        super().__init__()
        self.options = options
        self.start_timeout_s = start_timeout_s
        self._process: Any = None

    @classmethod
    def start(
        cls,
        backend: Backend = "auto",
        cache_dir: Path | None = None,
        batch_size: int | None = None,
        int8_min_tokens: int = 64,
        threads: int = 0,
        max_tokens: int | None = None,
        start_timeout_s: float = 600.0,
    ) -> EncoderProcess:
        """Start the child and wait for its encoder; raises what loading it raised (e.g. ModelNotFoundError)."""
        options = {
            "backend": backend,
            "cache_dir": cache_dir,
            "batch_size": batch_size,
            "int8_min_tokens": int8_min_tokens,
            "threads": threads,
            "max_tokens": max_tokens,
        }
        enc = cls(options, start_timeout_s)
        enc._open()
        return enc

    @property
    def pid(self) -> int | None:
        return None if self._process is None else int(self._process.pid)

    def _connect(self) -> Connection:
        if self.connects:
            log.warning("starting a new encoder process (the previous one died)")
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and an event loop
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=_child,
            args=(child, self.options, logging.getLogger().getEffectiveLevel()),
            name="evalstream-encoder",
            daemon=True,
        )
        process.start()
        child.close()  # only the child holds its end now: when the child dies, recv() here sees EOF
        self._process = process
        try:
            if not parent.poll(self.start_timeout_s):
                raise RemoteEncoderError(f"the encoder process did not load the model in {self.start_timeout_s:.0f}s")
            self._ready(parent, "the encoder process")
        except EOFError:
            parent.close()
            raise RemoteEncoderError(
                f"the encoder process exited while loading the model (exit code {self._stop_process()})"
            ) from None
        except BaseException:
            parent.close()
            self._stop_process()
            raise
        log.info("encoder process %d ready: %s", process.pid, self.name)
        return parent

    def _stop_process(self) -> int | None:
        """Wait for the child to exit (it does once its pipe is closed), kill it if it does not; its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        process.join(5)
        if process.exitcode is None:
            process.kill()
            process.join(5)
        return process.exitcode  # type: ignore[no-any-return]

    def _closed(self) -> str:
        return f"the encoder process died, exit code {self._stop_process()}"
