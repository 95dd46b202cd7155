"""Fixtures shared by the streams tests."""

from __future__ import annotations

import pytest

from streams.embedding.backends import OnnxEncoder
from streams.embedding.encoder import load_encoder
from streams.embedding.onnx_export import default_cache_dir


@pytest.fixture(scope="session")
def onnx_int8() -> OnnxEncoder:
    """The default CPU encoder (exported once into the project's model cache)."""
    enc = load_encoder("onnx-int8", default_cache_dir())
    assert isinstance(enc, OnnxEncoder)
    return enc
