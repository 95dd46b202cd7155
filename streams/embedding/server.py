"""One embedding model shared by the workers of a machine, over a Unix socket (``evalstream encoder``).

Beside a GPU one worker cannot feed the model (its event loop is the limit: ``docs/architecture.md``), so a machine
runs several workers; each loading its own model would put several CUDA contexts on one GPU, or several ONNX thread
pools on the same cores. Instead, ``evalstream encoder`` loads the model once and serves every worker that sets
``EVALSTREAM_EMBED_SERVER`` to its socket: each connection is served by a thread of its own, so one worker's
texts are tokenized while another's run on the model. The protocol is :mod:`streams.embedding.protocol` (no pickle).
The socket is created with owner-only permissions (0600).

:class:`EncoderClient` is the worker's side. At start it waits up to ``wait_s`` for the server (which binds its
socket only once the model is loaded). A lost server makes the call that noticed raise
:class:`streams.embedding.protocol.RemoteEncoderError`; the next calls reconnect, waiting at most ``wait_s`` in all
per outage (a restarted server is found again; a server that stays away fails each call at once after that).

Usage::

    $ evalstream encoder --socket /tmp/evalstream-encoder.sock &
    $ EVALSTREAM_EMBED_SERVER=/tmp/evalstream-encoder.sock evalstream worker

Example (any object with ``name``, ``dim`` and ``encode`` stands in for the model)::

    >>> import tempfile
    >>> class Lengths:
    ...     name, dim = "lengths", 2
    ...     def encode(self, texts):
    ...         return np.array([[len(t), 1] for t in texts], np.float32)
    >>> server = EncoderServer(Lengths(), Path(tempfile.mkdtemp()) / "encoder.sock")
    >>> threading.Thread(target=server.serve_forever, daemon=True).start()
    >>> with EncoderClient.connect(server.path, wait_s=10) as enc:
    ...     enc.name, enc.encode(["The cat sat.", "Hi"]).tolist()
    ('lengths', [[12.0, 1.0], [2.0, 1.0]])
    >>> server.stop(); server.path.exists()
    False
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path

import numpy as np

from streams.embedding.model import Encoder
from streams.embedding.protocol import RemoteEncoder, RemoteEncoderError, send_ready, serve_connection

log = logging.getLogger("evalstream.encoder_server")


class EncoderServerError(RemoteEncoderError):
    """The server cannot listen where asked (another server is there, or the path is unusable)."""


def _alive(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class EncoderServer:
    """Serves ``encoder`` on the Unix socket ``path`` until :meth:`stop` (example in the module docstring).

    Usage with the model, as ``evalstream encoder`` does::

        server = EncoderServer(load_encoder("onnx"), Path("/tmp/enc.sock"))
        server.serve_forever()
    """

    def __init__(self, encoder: Encoder, path: Path, concurrency: int = 2) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.encoder = encoder
        # calls on the model at once: two lets one client's texts be tokenized (or its ONNX batches fill the
        # pool's idle threads) while another's run
        self._slots = threading.BoundedSemaphore(concurrency)
        self.path = Path(path)
        if self.path.exists():
            if _alive(self.path):
                raise EncoderServerError(f"an encoder server already listens on {self.path}")
            if not self.path.is_socket():
                raise EncoderServerError(f"{self.path} exists and is not a socket")
            self.path.unlink()  # a stale socket left by a server that was killed
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o177)  # the socket file: read/write for the owner only
        try:
            self._listener = Listener(str(self.path), family="AF_UNIX")
        except OSError as exc:
            raise EncoderServerError(f"cannot listen on {self.path}: {exc}") from None
        finally:
            os.umask(old)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[Connection] = set()
        self.clients = 0  # connections accepted so far

    def serve_forever(self) -> None:
        """Accept clients until :meth:`stop`; each is served by a thread of its own."""
        log.info("encoder server on %s: %s", self.path, self.encoder.name)
        while not self._stopping.is_set():
            try:
                conn = self._listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("accepting a client failed")
                time.sleep(0.1)
                continue
            if self._stopping.is_set():
                conn.close()
                return
            self.clients += 1
            threading.Thread(target=self._serve, args=(conn,), name=f"client-{self.clients}", daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        with self._lock:
            self._conns.add(conn)
        try:
            send_ready(conn, self.encoder.name, self.encoder.dim)
            serve_connection(conn, self)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The encoder's vectors, with at most ``concurrency`` calls on it at once."""
        with self._slots:
            return self.encoder.encode(texts)

    def stop(self) -> None:
        """Stop accepting, remove the socket file and hang up on every client, as a server that exits does
        (a call in flight then fails in its client, which reconnects to the next server)."""
        self._stopping.set()
        # accept() does not wake up when the listener closes: dial it once so it returns, then close
        with contextlib.suppress(OSError):
            Client(str(self.path), family="AF_UNIX").close()
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # shutdown() wakes a thread blocked reading the connection; close() would not
            with contextlib.suppress(OSError), socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.shutdown(socket.SHUT_RDWR)


class EncoderClient(RemoteEncoder):
    """The worker's side of an :class:`EncoderServer`. Use :meth:`connect`."""

    def __init__(self, path: Path | str, wait_s: float = 300.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.wait_s = wait_s
        self._down_since: float | None = None  # when the current outage began

    @classmethod
    def connect(cls, path: Path | str, wait_s: float = 300.0) -> EncoderClient:
        """Connect, waiting up to ``wait_s`` for the server to appear; RemoteEncoderError if it does not."""
        client = cls(path, wait_s)
        client._open()
        return client

    def _connect(self) -> Connection:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        deadline = self._down_since + self.wait_s
        said = 0.0
        while True:
            try:
                conn = Client(str(self.path), family="AF_UNIX")
                break
            except OSError as exc:
                now = time.monotonic()
                if now >= deadline:
                    raise RemoteEncoderError(
                        f"no encoder server on {self.path} ({exc.strerror or exc}); start one with "
                        "`evalstream encoder`, or unset EVALSTREAM_EMBED_SERVER"
                    ) from None
                if now - said >= 10:
                    log.info("waiting for the encoder server on %s", self.path)
                    said = now
                time.sleep(min(0.2, deadline - now))
        try:
            self._ready(conn, f"the encoder server on {self.path}")
        except BaseException:
            conn.close()
            raise
        self._down_since = None
        log.info("connected to the encoder server on %s: %s", self.path, self.name)
        return conn

    def _closed(self) -> str:
        return f"the encoder server on {self.path} closed the connection"
