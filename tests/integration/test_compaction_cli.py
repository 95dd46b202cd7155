"""``evalstream compact`` after a real worker run: merged files, the same rows, only below the committed offsets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sinks.catalog import connect
from sinks.compaction import DATASETS
from sinks.parquet import parse_file_name
from sinks.store import Store
from streams.compaction import committed_offsets
from streams.local.sample import generate
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration.traffic import publish, run_worker_until_landed

pytestmark = pytest.mark.integration


def _everything(data_dir: str | Path) -> dict[str, list[tuple[object, ...]]]:
    con = connect(data_dir)
    try:
        return {
            "events": sorted(con.execute("SELECT event_id, _partition, _offset FROM events").fetchall()),
            "scores": sorted(con.execute("SELECT event_id, metric, value FROM scores").fetchall(), key=repr),
            "dlq": sorted(con.execute("SELECT _partition, _offset, reason FROM dlq").fetchall()),
        }
    finally:
        con.close()


def offset_files(data: str | Path) -> list[str]:
    """The files of the datasets the worker writes per offset range (the ones compaction merges)."""
    store = Store(data)
    return [rel for name in DATASETS for rel in store.list_files(name) if rel.endswith(".parquet")]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_compact_after_a_worker_run(
    settings: Settings, tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    update: dict[str, object] = {"flush_max_events": 50, "flush_interval_s": 0.3, "embed_backend": "off"}
    if where == "s3":  # a bucket of moto's server; Faust's files stay local
        update |= {"data_dir": request.getfixturevalue("s3_root"), "state_dir": tmp_path / "state"}
    settings = settings.model_copy(update=update)
    ensure_topics(settings)
    traffic = generate(n_events=800, n_sessions=40, n_malformed=6, seed=4)
    publish(settings, traffic)
    alive, code, log = run_worker_until_landed(settings, 800, 6, tmp_path / "worker.log")
    assert alive and code == 0, log[-2000:]
    before = _everything(settings.data_dir)
    files_before = offset_files(settings.data_dir)
    safe = committed_offsets(settings)
    assert safe, "the worker committed its offsets when it stopped"

    env = {**os.environ, **settings.to_env()}
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "compact", "--min-age", "0"], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "compacted" in done.stderr
    files_after = offset_files(settings.data_dir)
    merged = [f for f in files_after if ".compacted" in f]
    # few merged files; the inputs stay until a later run (after they had time to be hidden from every query)
    assert merged and len(merged) < len(files_before) / 3 and set(files_before) < set(files_after)
    assert _everything(settings.data_dir) == before
    for path in files_after:  # every compacted range lies below its partition's committed offset
        span = parse_file_name(path.rsplit("/", 1)[-1])
        assert span is not None
        if span.compacted:
            assert span.last_offset < safe[(span.topic, span.partition)]
