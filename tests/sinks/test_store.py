"""The data root in an S3-compatible object store, against moto's standalone server: the writer's replays overwrite
instead of duplicating (that one in ``test_parquet.py``, against both roots), and the catalog's views count right, see
new files and forget deleted ones. The moto server and a bucket per test come from ``conftest.py``.

moto answers each request in ~5 ms, so these tests keep their file counts small.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from sinks.catalog import Catalog, connect
from sinks.parquet import PartitionedParquetWriter, file_name
from sinks.schemas import SCORES_SCHEMA
from sinks.store import Store
from tests.helpers import score

DAY = datetime(2026, 11, 25, 12)


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
