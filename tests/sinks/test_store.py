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
    catalog = Catalog(s3_root, recheck_s=0)  # look for datasets that gained or lost all files at every cursor
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


def test_status_windows_alerts_and_cluster_runs_live_in_the_object_store(s3_root: str) -> None:
    from api.sandbox import allowed_directories
    from metrics.windows import WindowAggregate
    from sinks.alerting import window_row, write_windows
    from sinks.clusters import ClusterRow, ClusterRun, RunLock, next_id_number, previous_centroids, write_run
    from sinks.status import read_statuses, summarize, write_status
    from streams.cli_ops import folder_sizes

    for host in ("eval-1", "eval-2"):  # two machines, one worker id, the same pid: two status files
        write_status(s3_root, {"worker_id": "w", "pid": 7, "host": host, "updated_at": "2026-11-30T10:00:00Z",
                               "lag": {"0": 5} if host == "eval-1" else {"1": 2}})  # fmt: skip
    statuses = read_statuses(s3_root, now=datetime(2026, 11, 30, 10, 0, 30))
    assert [s["host"] for s in statuses] == ["eval-1", "eval-2"] and summarize(statuses)["total_lag"] == 7
    row = window_row(1796032800, 60, {"app": "chat"}, "thumbs_up", WindowAggregate().update_many([1.0, 0.0]), 1)
    assert write_windows(s3_root, 1796032800, "chat", [row]).startswith("windows/dt=2026-11-30/")
    noon = datetime(2026, 11, 30, 12)
    run = ClusterRun("r1", noon, "bot", None, datetime(2026, 11, 30), noon, "error", "input")
    with RunLock(s3_root).held():  # a local lock file: the store has none
        write_run(s3_root, run, [ClusterRow("c-1", 1, "refund", 4, 3, 0.75, 0.1, 7.5, 0.3, [1.0, 0.0], "{}", noon)],
                  {"cluster_id": ["c-1"], "generation_id": ["g1"], "failed": [True], "similarity": [0.9]})  # fmt: skip
    assert [c for c, _ in previous_centroids(s3_root, "bot", None)] == ["c-1"] and next_id_number(s3_root) == 2
    con = connect(s3_root)
    assert _count(con, "SELECT count(*), sum(count) FROM windows") == (1, 2)
    assert _count(con, "SELECT cluster_id, size FROM clusters") == ("c-1", 4)
    sizes = folder_sizes(s3_root)
    assert set(sizes) == {"_status", "windows", "cluster_runs", "cluster_member_runs"} and min(sizes.values()) > 0
    assert f"{s3_root}/" in allowed_directories(s3_root)


def test_an_unusable_store_is_refused_with_the_reason(s3_root: str, tmp_path: object) -> None:
    from sinks.store import StoreError, data_root

    Store(s3_root).check()  # the bucket exists
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        Store("s3://no-such-bucket/data").check()
    blocker = f"{tmp_path}/file"
    open(blocker, "w").close()
    with pytest.raises(StoreError, match="data folder"):
        Store(f"{blocker}/data").check()  # a folder cannot be made inside a file
    with pytest.raises(ValueError, match="s3://bucket"):
        data_root("s3://")


def test_the_catalog_looks_for_new_datasets_every_few_seconds_in_an_object_store(
    s3_root: str, tmp_path: object
) -> None:
    catalog = Catalog(s3_root)
    assert catalog.recheck_s == 5.0 and Catalog(str(tmp_path)).recheck_s == 0.0  # a local folder: every cursor
    assert _count(catalog.cursor()) == (0, 0)
    PartitionedParquetWriter(s3_root, "scores", SCORES_SCHEMA).write("t", 0, 0, 0, [score("a", DAY)])
    assert _count(catalog.cursor()) == (0, 0)  # the first file of a dataset: not looked for yet
    catalog._checked -= 5.0  # five seconds later
    assert _count(catalog.cursor()) == (1, 1)


def test_a_file_rewritten_under_its_name_is_read_again(s3_root: str) -> None:
    """The store keeps small files read through DuckDB in memory while their size and modification time hold: a
    replay that rewrites a file under the same name (the same offset range) is read anew."""
    w = PartitionedParquetWriter(s3_root, "scores", SCORES_SCHEMA)
    w.write("t", 0, 0, 9, [score(f"e{i}", DAY) for i in range(2)])
    catalog = Catalog(s3_root)
    assert _count(catalog.cursor()) == (2, 2)
    assert _count(catalog.cursor()) == (2, 2)  # from memory now
    w.write("t", 0, 0, 9, [score(f"e{i}", DAY) for i in range(5)])  # the same range, written again
    assert _count(catalog.cursor()) == (5, 5)
