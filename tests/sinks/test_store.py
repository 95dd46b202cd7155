"""The data root in an S3-compatible object store, against moto's standalone server: the writer's replays overwrite
instead of duplicating, and the catalog's views count right, see new files and forget deleted ones.

moto answers each request in ~5 ms, so these tests keep their file counts small.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pytest
from pyarrow import fs

from sinks.catalog import Catalog, connect
from sinks.parquet import PartitionedParquetWriter, file_name
from sinks.schemas import SCORES_SCHEMA
from sinks.store import Store
from tests.helpers import score

pytest.importorskip("moto", reason="moto[server] (the dev extras) runs the S3 stand-in")

DAY = datetime(2026, 11, 25, 12)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto S3 server for the whole session (ready in ~0.3 s)."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/reset", data=b"", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("moto server not ready after 30 s")
            time.sleep(0.05)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_root(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<a new bucket>/data``, with the endpoint and dummy credentials in the environment."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    bucket = f"evalstream-{uuid.uuid4().hex[:12]}"
    admin, _ = fs.FileSystem.from_uri(f"s3://{bucket}?allow_bucket_creation=true")
    admin.create_dir(bucket)
    return f"s3://{bucket}/data"


def _count(con: object, sql: str = "SELECT count(*), count(DISTINCT event_id) FROM scores") -> tuple[int, ...]:
    return con.execute(sql).fetchone()  # type: ignore[attr-defined,no-any-return]


def test_files_are_named_by_partition_and_offsets_and_split_by_date(s3_root: str) -> None:
    store = Store(s3_root)
    written = PartitionedParquetWriter(s3_root, "scores", SCORES_SCHEMA).write(
        "llm.events", 3, 100, 102, [score("a", datetime(2026, 11, 24, 23, 59)), score("b", datetime(2026, 11, 25))]
    )
    name = file_name("llm.events", 3, 100, 102)
    assert [p.name for p in written] == [name, name]
    assert store.list_files() == [f"scores/dt=2026-11-24/{name}", f"scores/dt=2026-11-25/{name}"]
    assert store.url("scores/x.parquet") == f"{s3_root}/scores/x.parquet"
    assert _count(connect(s3_root), "SELECT count(*), min(dt) FROM scores") == (2, datetime(2026, 11, 24).date())


def test_replay_overwrites_instead_of_duplicating(s3_root: str) -> None:
    first_run = PartitionedParquetWriter(s3_root, "scores", SCORES_SCHEMA)
    first_run.write("t", 0, 0, 9, [score(f"e{i}", DAY) for i in range(10)])
    first_run.write("t", 0, 10, 29, [score(f"e{i}", DAY) for i in range(10, 30)])  # written, never committed
    first_run.write("t", 1, 0, 4, [score(f"p1-{i}", DAY) for i in range(5)])
    # crash; the offsets committed were 0..9 of partition 0. The replay (a new process) batches differently:
    replay = PartitionedParquetWriter(s3_root, "scores", SCORES_SCHEMA)
    replay.write("t", 0, 10, 19, [score(f"e{i}", DAY) for i in range(10, 20)])
    con = connect(s3_root)
    ids = [r[0] for r in con.execute("SELECT event_id FROM scores").fetchall()]
    assert len(ids) == len(set(ids)), "no duplicates after the replay"
    assert set(ids) == {f"e{i}" for i in range(20)} | {f"p1-{i}" for i in range(5)}
    replay.write("t", 0, 20, 29, [score(f"e{i}", DAY) for i in range(20, 30)])
    assert _count(con) == (35, 35)


def test_redelivery_with_other_cuts_and_an_empty_batch(s3_root: str) -> None:
    w = PartitionedParquetWriter(s3_root, "scores", SCORES_SCHEMA)
    w.write("t", 0, 0, 9, [score(f"e{i}", DAY) for i in range(10)])
    w.write("t", 0, 10, 20, [score(f"e{i}", DAY) for i in range(10, 21)])
    w.write("t", 0, 0, 12, [score(f"e{i}", DAY) for i in range(13)])  # a seek back, cut differently
    con = connect(s3_root)
    assert _count(con) == (13, 13)
    PartitionedParquetWriter(s3_root, "scores", SCORES_SCHEMA).write("t", 0, 0, 12, [])  # only clears the range
    assert Store(s3_root).list_files("scores") == []  # the folder marker pyarrow leaves is not a file
    assert _count(connect(s3_root)) == (0, 0)


def test_index_limit_falls_back_to_the_store(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PartitionedParquetWriter, "INDEX_LIMIT", 2)
    w = PartitionedParquetWriter(s3_root, "scores", SCORES_SCHEMA)
    for i in range(4):
        w.write("t", 0, i * 10, i * 10 + 9, [score(f"e{j}", DAY) for j in range(i * 10, i * 10 + 10)])
    w.write("t", 0, 0, 39, [score(f"e{j}", DAY) for j in range(40)])  # older than the in-memory index
    assert Store(s3_root).list_files("scores") == [f"scores/dt=2026-11-25/{file_name('t', 0, 0, 39)}"]


def test_catalog_sees_new_and_deleted_files_and_hides_compacted_inputs(s3_root: str) -> None:
    store = Store(s3_root)
    catalog = Catalog(s3_root)
    assert _count(catalog.cursor()) == (0, 0)  # a fresh bucket: empty views with every column
    w = PartitionedParquetWriter(store, "scores", SCORES_SCHEMA)
    w.write("t", 0, 0, 1, [score("a", DAY), score("b", DAY)])
    assert _count(catalog.cursor()) == (2, 2)  # the dataset's first file: the view is defined again
    w.write("t", 0, 2, 2, [score("c", datetime(2026, 11, 26))])
    assert _count(catalog.cursor(), "SELECT count(*), count(DISTINCT dt) FROM scores") == (3, 2)  # a new file
    # a compacted file over 0..2 in the first folder hides the input of that folder it covers
    merged = file_name("t", 0, 0, 2).removesuffix(".parquet") + ".compacted.parquet"
    table = pa.Table.from_pylist([score("a", DAY), score("b", DAY)], schema=SCORES_SCHEMA)
    store.write_parquet(f"scores/dt=2026-11-25/{merged}", table)
    assert _count(catalog.cursor()) == (3, 3)
    store.delete(f"scores/dt=2026-11-26/{file_name('t', 0, 2, 2)}")
    assert _count(catalog.cursor()) == (2, 2)  # a deleted file
    for rel in store.list_files("scores"):
        store.delete(rel)
    assert _count(catalog.cursor()) == (0, 0)  # its last file gone: an empty view again, not an error
    assert _count(catalog.cursor(), "SELECT count(*) FROM generations") == (0,)  # the views built on them too


def test_endpoint_from_the_url_and_local_roots_unchanged(
    s3_root: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    store = Store(f"{s3_root}?endpoint_override={moto_endpoint}")
    store.write_parquet("dlq/dt=unknown/x.parquet", pa.table({"a": [1]}))
    assert store.list_files("dlq") == ["dlq/dt=unknown/x.parquet"]
    assert store.url("dlq") == f"{s3_root}/dlq"
    store.delete("dlq/dt=unknown/missing.parquet")  # not there: nothing happens
    local = Store(str(tmp_path))
    assert (local.local, local.url("scores"), store.local) == (True, f"{tmp_path}/scores", False)
