"""One embedding model shared by several workers over a Unix socket (streams.embedding.server), real weights."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Client, Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from streams.embedding import server as server_module
from streams.embedding.backends import OnnxEncoder
from streams.embedding.cache import CachedEncoder
from streams.embedding.encoder import load_encoder
from streams.embedding.onnx_export import default_cache_dir
from streams.embedding.protocol import RemoteEncoderError, recv_reply, send_texts
from streams.embedding.server import EncoderClient, EncoderServer, EncoderServerError
from streams.settings import Settings
from streams.worker.app import create_embedder

TEXTS = [
    "You should take 400 mg of ibuprofen every six hours with food.",
    "Our Pro plan costs $49 per month, billed annually.",
    "Thank you.",
    "请问你们的退货政策是什么？",
    "lone \ud800 surrogate",
    "",
]


@pytest.fixture(scope="module")
def onnx() -> OnnxEncoder:
    enc = load_encoder("onnx", default_cache_dir())
    assert isinstance(enc, OnnxEncoder)
    return enc


@pytest.fixture
def sock() -> Iterator[Path]:
    """A socket path short enough for AF_UNIX (108 bytes; pytest's tmp_path can be longer)."""
    folder = Path(tempfile.mkdtemp(prefix="es-", dir="/tmp"))
    yield folder / "encoder.sock"
    shutil.rmtree(folder, ignore_errors=True)


class _Serving:
    """An EncoderServer on a thread of this process."""

    def __init__(self, encoder: object, path: Path) -> None:
        self.server = EncoderServer(encoder, path)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


class _FailsOn:
    """The real encoder, except that a text equal to ``bad`` makes the whole call raise (a model failure)."""

    def __init__(self, inner: OnnxEncoder, bad: str) -> None:
        self.inner, self.bad, self.name, self.dim = inner, bad, inner.name, inner.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.bad in texts:
            raise RuntimeError("the model failed")
        return self.inner.encode(texts)


Dialed = str | tuple[str, float]


class _Dialing:
    """What the encoder server module does to reach a socket, recorded in order: each dial (``"refused"`` or
    ``"answered"``) and, with ``own_clock``, each pause between dials (``("wait", seconds)``).

    With ``own_clock`` the module's clock is the test's: a pause advances it at once instead of sleeping, so how
    long a client waited is read from the record, never measured on a (busy) machine.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, own_clock: bool) -> None:
        self.events: list[Dialed] = []
        self.refused = threading.Event()  # set at the first refused dial
        self.now = 1000.0
        monkeypatch.setattr(server_module, "Client", self._dial)
        if own_clock:
            monkeypatch.setattr(server_module, "time", SimpleNamespace(monotonic=lambda: self.now, sleep=self._wait))

    def _dial(self, *args: Any, **kwargs: Any) -> Connection:
        try:
            conn = Client(*args, **kwargs)
        except OSError:
            self.events.append("refused")
            self.refused.set()
            raise
        self.events.append("answered")
        return conn

    def _wait(self, seconds: float) -> None:
        self.events.append(("wait", seconds))
        self.now += seconds

    def take(self) -> list[Dialed]:
        """The events since the last call."""
        events, self.events = self.events, []
        return events


def _waits(events: list[Dialed]) -> list[float]:
    """The pauses of ``events``, after checking they alternate with refused dials: dial, wait, dial, ..., dial."""
    waits = [e[1] for e in events if isinstance(e, tuple)]
    assert events == ["refused", *[x for w in waits for x in (("wait", w), "refused")]], events
    return waits


def test_two_clients_share_one_model(onnx: OnnxEncoder, sock: Path) -> None:
    """Two clients with overlapping calls get the same vectors as the model itself, from one owner-only socket."""
    serving = _Serving(onnx, sock)
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600  # only the owner may connect
        expected = onnx.encode(TEXTS)
        got: dict[int, np.ndarray] = {}

        def client(i: int) -> None:
            with EncoderClient.connect(sock, wait_s=5) as enc:
                assert (enc.name, enc.dim) == (onnx.name, 384)
                for _ in range(3):  # calls from both clients overlap on the server
                    got[i] = enc.encode(TEXTS[i:] + TEXTS[:i])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert serving.server.clients == 2
        for i, vectors in got.items():
            assert np.allclose(vectors, np.roll(expected, -i, axis=0), atol=1e-5)
        assert len(got) == 2
    finally:
        serving.stop()
    assert not sock.exists()  # removed on stop


def test_a_model_failure_reaches_the_client_and_the_server_keeps_serving(onnx: OnnxEncoder, sock: Path) -> None:
    """A failing encode is raised in the client with the model's message; the same connection serves the next call."""
    serving = _Serving(_FailsOn(onnx, "boom"), sock)
    try:
        with EncoderClient.connect(sock, wait_s=5) as enc:
            with pytest.raises(RemoteEncoderError, match="in the encoder: RuntimeError: the model failed"):
                enc.encode(["fine", "boom"])
            assert np.allclose(enc.encode(["fine"]), onnx.encode(["fine"]), atol=1e-5)
            assert enc.connects == 1
    finally:
        serving.stop()


def test_nothing_but_the_protocol_is_accepted(onnx: OnnxEncoder, sock: Path) -> None:
    """A pickled object is answered with a ProtocolError, never unpickled, and the connection keeps serving."""
    serving = _Serving(onnx, sock)
    try:
        conn = Client(str(sock), family="AF_UNIX")
        assert recv_reply(conn) == ("ready", onnx.name, 384)
        conn.send({"a pickled": "object"})  # never unpickled by the server
        reply = recv_reply(conn)
        assert reply[0] == "error" and reply[1] == "ProtocolError"
        send_texts(conn, ["still serving"])
        assert np.allclose(recv_reply(conn)[1], onnx.encode(["still serving"]), atol=1e-5)
        conn.close()
    finally:
        serving.stop()


def test_a_client_waits_for_a_server_that_is_still_loading(
    onnx: OnnxEncoder, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client started before its server keeps dialing until the server is up, then connects to it: its first
    dial is refused, the server starts only after that, and the one answered dial comes after the server started."""
    dialing = _Dialing(monkeypatch, own_clock=False)
    late: list[_Serving] = []

    def start_once_refused() -> None:
        if dialing.refused.wait(60):
            dialing.events.append("server starts")  # before it binds: no dial can be answered before this
            late.append(_Serving(onnx, sock))

    starter = threading.Thread(target=start_once_refused)
    starter.start()
    try:
        with EncoderClient.connect(sock, wait_s=120) as enc:
            seen = dialing.take()
            assert np.allclose(enc.encode(TEXTS[:1]), onnx.encode(TEXTS[:1]), atol=1e-5)
            assert enc.connects == 1
    finally:
        starter.join(60)
        for serving in late:
            serving.stop()
    assert seen[0] == "refused"
    assert seen.count("answered") == 1 and seen[-1] == "answered"
    assert seen.count("server starts") == 1 and seen.index("server starts") < seen.index("answered")
    assert set(seen[:-1]) == {"refused", "server starts"}


def test_no_server_is_a_clear_error(sock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no server, ``connect`` dials, pauses, dials again (every dial refused), and gives up once its pauses
    add up to ``wait_s``, with an error that says what to do. The pauses are counted on the test's clock."""
    dialing = _Dialing(monkeypatch, own_clock=True)
    with pytest.raises(RemoteEncoderError, match=f"no encoder server on {sock}.*evalstream encoder"):
        EncoderClient.connect(sock, wait_s=0.5)
    waits = _waits(dialing.take())
    assert sum(waits) == pytest.approx(0.5) and len(waits) >= 3 and max(waits) <= 0.2


def test_a_restarted_server_is_found_again_and_an_absent_one_fails_fast(
    onnx: OnnxEncoder, sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost server fails the call that notices it (no dial); the next call dials until it has waited ``wait_s``
    in all, and the calls after it dial once and fail without waiting (one wait per outage); a server that comes
    back is found by the next call, which reconnects with the same vectors. Waits are counted on the test's clock."""
    serving = _Serving(onnx, sock)
    enc = EncoderClient.connect(sock, wait_s=2)
    try:
        before = enc.encode(TEXTS)
        serving.stop()
        dialing = _Dialing(monkeypatch, own_clock=True)
        with pytest.raises(RemoteEncoderError, match="closed the connection"):
            enc.encode(TEXTS)  # the server closed: this call fails, the next reconnects
        assert dialing.take() == []
        with pytest.raises(RemoteEncoderError, match="no encoder server"):
            enc.encode(TEXTS)
        waits = _waits(dialing.take())
        assert sum(waits) == pytest.approx(2.0) and len(waits) >= 10 and max(waits) <= 0.2
        with pytest.raises(RemoteEncoderError, match="no encoder server"):
            enc.encode(TEXTS)
        assert dialing.take() == ["refused"]  # the outage already lasted wait_s: one dial, no wait
        serving = _Serving(onnx, sock)  # back: found again, and the outage is over
        assert np.allclose(enc.encode(TEXTS), before, atol=1e-6)
        assert dialing.take() == ["answered"]
        assert enc.connects == 2
    finally:
        enc.close()
        serving.stop()


def test_one_server_per_socket_and_stale_sockets_are_replaced(onnx: OnnxEncoder, sock: Path) -> None:
    """A second server on a live socket is refused; a stale socket file is replaced; a plain file is refused."""
    serving = _Serving(onnx, sock)
    try:
        with pytest.raises(EncoderServerError, match="already listens"):
            EncoderServer(onnx, sock)
    finally:
        serving.stop()
    import socket

    stale = socket.socket(socket.AF_UNIX)  # a socket file nobody listens on (as a killed server leaves)
    stale.bind(str(sock))
    stale.close()
    assert sock.exists()
    serving = _Serving(onnx, sock)
    try:
        with EncoderClient.connect(sock, wait_s=5) as enc:
            assert np.allclose(enc.encode(TEXTS[:2]), onnx.encode(TEXTS[:2]), atol=1e-5)
    finally:
        serving.stop()
    sock.write_text("not a socket")
    with pytest.raises(EncoderServerError, match="is not a socket"):
        EncoderServer(onnx, sock)


def test_the_encoder_command_serves_the_worker(sock: Path, tmp_path: Path) -> None:
    """`evalstream encoder` serves the worker's embedder (the server's backend, its vectors); a second one is refused
    and SIGTERM stops the first cleanly, removing its socket."""
    env = {**os.environ, "EVALSTREAM_EMBED_BACKEND": "onnx", "EVALSTREAM_EMBED_SERVER": str(sock)}
    log = (tmp_path / "encoder.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "streams.cli", "encoder"], env=env, stdout=log, stderr=log)
    try:
        # what the worker does with EVALSTREAM_EMBED_SERVER: no model of its own, the server's
        scorer = create_embedder(Settings(data_dir=tmp_path, embed_server=sock, embed_backend="onnx-int8"))
        assert scorer is not None and isinstance(scorer.encoder, CachedEncoder)
        assert isinstance(scorer.encoder.inner, EncoderClient)
        assert scorer.encoder.name == "onnx-fp32"  # the server's backend, not the worker's own setting
        vectors = scorer.encoder.encode(TEXTS)
        assert np.allclose(vectors, load_encoder("onnx", default_cache_dir()).encode(TEXTS), atol=1e-5)
        scorer.encoder.inner.close()  # type: ignore[attr-defined]
        second = subprocess.run(
            [sys.executable, "-m", "streams.cli", "encoder"], env=env, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 1 and "already listens" in second.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(30)
        log.close()
    assert code == 0, (tmp_path / "encoder.log").read_text()
    assert not sock.exists()


def test_the_encoder_command_needs_a_socket_and_a_model(sock: Path) -> None:
    """`evalstream encoder` without a socket, with no model, or with concurrency 0 fails with a message."""
    env = {k: v for k, v in os.environ.items() if k != "EVALSTREAM_EMBED_SERVER"}
    cmd = [sys.executable, "-m", "streams.cli", "encoder"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "--socket PATH or EVALSTREAM_EMBED_SERVER" in done.stderr
    off = {**env, "EVALSTREAM_EMBED_BACKEND": "off"}
    done = subprocess.run([*cmd, "--socket", str(sock)], env=off, capture_output=True, text=True)
    assert done.returncode == 1 and "no model to serve" in done.stderr
    done = subprocess.run([*cmd, "--socket", str(sock), "--concurrency", "0"], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "concurrency" in done.stderr
    assert not sock.exists()


@pytest.mark.integration
def test_two_workers_share_one_encoder_server_through_kafka(settings: Settings, sock: Path, tmp_path: Path) -> None:
    """Two worker processes in one consumer group, one `evalstream encoder`: every generation embedded once."""
    from sinks.catalog import connect, landed_counts
    from streams.local.launch import spawn_cli, stop, wait_for
    from streams.local.sample import generate
    from streams.sdk.publisher import Publisher
    from streams.topics import ensure_topics

    settings = settings.model_copy(update={"embed_server": sock, "flush_max_events": 200})
    ensure_topics(settings)
    traffic = generate(n_events=800, n_sessions=40, n_malformed=0, seed=5)
    with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
        pub.publish_many(traffic.events)
    server = spawn_cli(["encoder"], {**settings.to_env(), "EVALSTREAM_EMBED_BACKEND": "onnx"}, tmp_path / "enc.log")
    workers = [spawn_cli(["worker"], settings.to_env(), tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        wait_for(lambda: landed_counts(settings.data_dir) == (800, 0) or None, 240, what="the workers", alive=server)
        alive = [w.poll() is None for w in workers]
    finally:
        codes = [stop(w) for w in workers]
        server_code = stop(server)
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    assert all(alive) and all(c in (0, -signal.SIGTERM) for c in codes), [log[-2000:] for log in logs]
    assert server_code == 0, (tmp_path / "enc.log").read_text()[-2000:]
    for log in logs:
        assert "Traceback" not in log, log[-3000:]
    con = connect(settings.data_dir)
    generations = sum(e["type"] == "generation" and not e.get("error") for e in traffic.events)
    embedded = con.execute("SELECT count(*), count(DISTINCT generation_id), any_value(encoder) FROM embeddings")
    assert embedded.fetchone() == (generations, generations, "onnx-fp32")  # the server's backend
    relevance = con.execute("SELECT count(*) FROM scores WHERE metric = 'relevance'").fetchone()
    assert relevance is not None and relevance[0] > 0
