"""An encoder in another process: the messages both ends exchange, and the client side that forwards ``encode``.

Two places run the model outside the worker's process: a child process of the worker
(:mod:`streams.embedding.process`, the default) and an encoder server shared by the workers of one machine
(:mod:`streams.embedding.server`). Both speak this protocol over a ``multiprocessing.connection.Connection`` (a
pipe or a Unix socket), one request at a time per connection, and nothing is pickled (a socket peer is not
trusted to run code):

- the server, once its model is loaded: ``R`` + JSON ``{"name", "dim"}`` (or ``E`` + JSON if loading failed);
- request: ``T`` + the texts as a JSON array of strings (ASCII-escaped, so lone surrogates survive);
- reply: ``V`` + ``<n> <dim>`` as two little-endian uint32 + ``n * dim`` float32 values, or ``E`` + JSON
  ``{"kind", "message"}`` when encoding failed (the server keeps serving).

Example::

    >>> a, b = __import__("multiprocessing").Pipe()
    >>> send_texts(a, ["hello", "wor\\ud800ld"]); recv_texts(b)
    ['hello', 'wor\\ud800ld']
    >>> send_vectors(b, np.ones((2, 3), np.float32)); recv_reply(a)[1].shape
    (2, 3)
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from streams.embedding.model import ModelNotFoundError

log = logging.getLogger("evalstream.remote_encoder")

_SHAPE = struct.Struct("<II")


class RemoteEncoderError(RuntimeError):
    """The encoder in another process failed a call, could not be reached, or died."""


class ProtocolError(RemoteEncoderError):
    """A message that is not one of the protocol's."""


def send_texts(conn: Connection, texts: Sequence[str]) -> None:
    conn.send_bytes(b"T" + json.dumps(list(texts), ensure_ascii=True).encode("ascii"))


def recv_texts(conn: Connection) -> list[str]:
    """The texts of a request; ProtocolError if it is not a JSON array of strings."""
    data = conn.recv_bytes()
    try:
        if data[:1] != b"T":
            raise ValueError("not a request")
        texts = json.loads(data[1:])
    except ValueError as exc:
        raise ProtocolError(f"bad request: {exc}") from None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ProtocolError("bad request: texts must be a JSON array of strings")
    return texts


def send_vectors(conn: Connection, vectors: np.ndarray) -> None:
    arr = np.ascontiguousarray(vectors, dtype="<f4")
    conn.send_bytes(b"V" + _SHAPE.pack(*arr.shape) + arr.tobytes())


def send_error(conn: Connection, exc: BaseException) -> None:
    conn.send_bytes(b"E" + json.dumps({"kind": type(exc).__name__, "message": str(exc)}).encode())


def send_ready(conn: Connection, name: str, dim: int) -> None:
    conn.send_bytes(b"R" + json.dumps({"name": name, "dim": dim}).encode())


def recv_reply(conn: Connection) -> tuple[Any, ...]:
    """``("vectors", array)``, ``("error", kind, message)`` or ``("ready", name, dim)``."""
    data = conn.recv_bytes()
    tag, body = data[:1], data[1:]
    try:
        if tag == b"V":
            n, dim = _SHAPE.unpack_from(body)
            return ("vectors", np.frombuffer(body, "<f4", n * dim, _SHAPE.size).reshape(n, dim).copy())
        if tag in (b"E", b"R"):
            fields = json.loads(body)
            if tag == b"E":
                return ("error", str(fields["kind"]), str(fields["message"]))
            return ("ready", str(fields["name"]), int(fields["dim"]))
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise ProtocolError(f"bad reply: {exc}") from None
    raise ProtocolError(f"bad reply: unknown tag {tag!r}")


def load_error(kind: str, message: str) -> Exception:
    """The exception a failed model load raised on the other side, as the same type where it is ours."""
    if kind == "ModelNotFoundError":
        return ModelNotFoundError(message)
    if kind == "ValueError":
        return ValueError(message)
    return RemoteEncoderError(f"the encoder failed to load the model: {kind}: {message}")


class RemoteEncoder:
    """The client side: ``encode`` sends the texts and waits for their vectors; one call at a time.

    Subclasses say how to get a connection (:meth:`_connect`: start a child, or dial a server) and what else to
    clean up once it is closed (:meth:`_closed`). After a lost connection the call raises
    :class:`RemoteEncoderError` and the next call connects again.
    """

    name: str = ""
    dim: int = 0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self.connects = 0  # connections made (1 + reconnections after a loss)

    def _connect(self) -> Connection:
        """A connection whose ``ready`` message was read (sets ``name`` and ``dim``); raises if none."""
        raise NotImplementedError

    def _closed(self) -> str:
        """After the connection was closed: clean up what was behind it; a few words on why it was lost."""
        raise NotImplementedError

    def _drop(self) -> str:
        """Close and forget the connection (under the lock); why it was lost."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return self._closed()

    def _connection(self) -> Connection:
        """The open connection, or a new one (under the lock)."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _open(self) -> None:
        """Connect now (the constructors' ``start`` / ``connect`` do, so that start-up errors surface there)."""
        with self._lock:
            self._connection()

    def _ready(self, conn: Connection, where: str) -> None:
        """Read the other side's first message: its encoder's name and dimension, or why it failed."""
        reply = recv_reply(conn)
        if reply[0] == "error":
            raise load_error(reply[1], reply[2])
        if reply[0] != "ready":
            raise ProtocolError(f"{where} sent {reply[0]} before it was ready")
        _, name, dim = reply
        if self.name and (name, dim) != (self.name, self.dim):
            log.warning("%s now runs %s (%d dimensions), not %s (%d)", where, name, dim, self.name, self.dim)
        self.name, self.dim = name, dim
        self.connects += 1

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            conn = self._connection()
            try:
                send_texts(conn, texts)
                reply = recv_reply(conn)
            except (EOFError, OSError) as exc:
                why = self._drop()
                raise RemoteEncoderError(f"lost the encoder ({why}): {type(exc).__name__}") from None
        if reply[0] == "vectors":
            vectors: np.ndarray = reply[1]
            if vectors.shape != (len(texts), self.dim):
                raise ProtocolError(f"got vectors of shape {vectors.shape} for {len(texts)} texts")
            return vectors
        if reply[0] == "error":
            raise RemoteEncoderError(f"encoding failed in the encoder: {reply[1]}: {reply[2]}")
        raise ProtocolError(f"unexpected {reply[0]} reply")

    def close(self) -> None:
        """Drop the connection (a child process exits with it); idempotent. A later call connects again."""
        with self._lock:
            self._drop()

    def __enter__(self) -> RemoteEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_connection(conn: Connection, encoder: Any) -> None:
    """Answer requests on ``conn`` with ``encoder`` until the peer closes it (the server side of one client)."""
    while True:
        try:
            try:
                texts = recv_texts(conn)
            except ProtocolError as exc:
                log.error("%s", exc)
                send_error(conn, exc)
                continue
            try:
                vectors = encoder.encode(texts)
            except Exception as exc:  # reported to the client, which decides
                log.exception("encoding %d texts failed", len(texts))
                send_error(conn, exc)
            else:
                send_vectors(conn, vectors)
        except (EOFError, OSError):  # the client closed its end or died (also while its call was encoded)
            return
