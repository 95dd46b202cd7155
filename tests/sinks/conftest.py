"""Fixtures of the sinks' tests: a data root per test, local and then S3 (``moto_endpoint`` and ``s3_root`` come
from ``tests/object_store.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A data root: a local folder, then an S3 bucket (the writer and the catalog must behave the same)."""
    if request.param == "local":
        return str(tmp_path)
    return str(request.getfixturevalue("s3_root"))
