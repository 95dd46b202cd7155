"""Compaction: every row kept exactly once, for readers during it, after a crash in the middle, and for replays;
in a local folder and in an object store (``root`` runs a test on both: see ``conftest.py``)."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from sinks.catalog import connect, query
from sinks.compaction import compact
from sinks.parquet import PartitionedParquetWriter, parse_file_name
from sinks.schemas import SCORES_SCHEMA
from sinks.store import Store

TOPIC = "llm.events"
DAY = datetime(2026, 11, 25, 23, 59, 50)  # batches straddle midnight: files of one range in two date folders


def write_batches(root: str | Path, partitions: int = 2, batches: int = 15, per_batch: int = 40) -> int:
    """Small files as the worker writes them: each batch of a partition covers 10 offsets."""
    writer = PartitionedParquetWriter(root, "scores", SCORES_SCHEMA)
    rows = 0
    for p in range(partitions):
        for b in range(batches):
            batch = [
                {"event_id": f"{p}-{b}-{i}", "generation_id": f"g{i}", "ts": DAY + timedelta(seconds=i % 20),
                 "app": "chat", "metric": "m", "value": float(i)}
                for i in range(per_batch)
            ]  # fmt: skip
            writer.write(TOPIC, p, b * 10, b * 10 + 9, batch)
            rows += len(batch)
    return rows


def rows_seen(root: str | Path) -> list[tuple[Any, ...]]:
    con = connect(root)
    try:
        return sorted(con.execute("SELECT event_id, ts, value, dt FROM scores").fetchall())
    finally:
        con.close()


def files(root: str | Path) -> list[str]:
    """The Parquet files of ``scores`` as ``dt=…/name``."""
    found = (rel.split("/", 1)[1] for rel in Store(root).list_files("scores"))
    return sorted(f for f in found if f.endswith(".parquet") and not f.split("/")[-1].startswith("."))


def test_compaction_merges_what_is_safe_and_keeps_every_row(root: str) -> None:
    tmp_path = root
    total = write_batches(tmp_path)
    before = rows_seen(tmp_path)
    assert len(before) == total and len(files(tmp_path)) == 2 * 15 * 2  # two date folders
    report = compact(tmp_path, {(TOPIC, 0): 100, (TOPIC, 1): 150}, min_age_s=0)
    assert rows_seen(tmp_path) == before
    # partition 0: offsets 0..99 merged, 100..149 kept; partition 1: everything; per date folder
    names = files(tmp_path)
    compacted = [n for n in names if n.endswith(".compacted.parquet")]
    assert len(compacted) == 4 and report.merged == 4
    assert {n.split("/")[1] for n in compacted} == {
        f"{TOPIC}-00000-{0:020d}-{99:020d}.compacted.parquet",
        f"{TOPIC}-00001-{0:020d}-{149:020d}.compacted.parquet",
    }
    assert len(names) == 4 + 2 * 5  # partition 0's five unsafe batches, in both folders
    assert report.files_in == 2 * (10 + 15) and report.rows == total - 5 * 40
    store = Store(root)
    for name in compacted:
        with store.fs.open_input_file(store.path(f"scores/{name}")) as src:
            meta = pq.ParquetFile(src).metadata
        assert meta.num_row_groups == 1 and meta.num_rows > 40
    # again with more offsets safe: the compacted file is merged with the newer small files
    compact(tmp_path, {(TOPIC, 0): 150, (TOPIC, 1): 150}, min_age_s=0)
    assert rows_seen(tmp_path) == before and len(files(tmp_path)) == 4


def test_fresh_files_and_unknown_partitions_are_left_alone(tmp_path: Path) -> None:
    write_batches(tmp_path)
    before = files(tmp_path)
    assert compact(tmp_path, {(TOPIC, 0): 150}, min_age_s=3600).merged == 0  # written just now
    assert compact(tmp_path, {("other.topic", 0): 150}, min_age_s=0).merged == 0
    assert files(tmp_path) == before


def test_a_crash_after_the_rename_hides_the_inputs_and_the_next_run_deletes_them(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = root
    write_batches(tmp_path)
    before = rows_seen(tmp_path)
    real_delete = Store.delete
    deleted = []

    def crash_after_three(self: Store, rel: str) -> None:
        if len(deleted) == 3:
            raise KeyboardInterrupt("the process dies here")
        deleted.append(rel)
        real_delete(self, rel)

    monkeypatch.setattr(Store, "delete", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        compact(tmp_path, {(TOPIC, 0): 150, (TOPIC, 1): 150}, min_age_s=0)
    monkeypatch.setattr(Store, "delete", real_delete)
    assert any(n.endswith(".compacted.parquet") for n in files(tmp_path))  # merged file in place, inputs left
    assert rows_seen(tmp_path) == before  # ... and hidden: no row twice
    report = compact(tmp_path, {(TOPIC, 0): 150, (TOPIC, 1): 150}, min_age_s=0)
    assert report.leftovers_deleted == 15 - 3
    assert rows_seen(tmp_path) == before and len(files(tmp_path)) == 4


def test_a_crash_before_the_rename_changes_nothing_readers_see(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_batches(tmp_path)
    before, names = rows_seen(tmp_path), files(tmp_path)

    def crash(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt("the process dies here")

    monkeypatch.setattr(os, "replace", crash)  # the sinks' atomic write renames with os.replace
    with pytest.raises(KeyboardInterrupt):
        compact(tmp_path, {(TOPIC, 0): 150}, min_age_s=0)
    monkeypatch.undo()
    (tmp,) = (tmp_path / "scores").glob("dt=*/.*.tmp")
    assert rows_seen(tmp_path) == before and files(tmp_path) == names
    os.utime(tmp, (time.time() - 7200, time.time() - 7200))  # an hour later, the next run removes it
    compact(tmp_path, {(TOPIC, 0): 150}, min_age_s=0)
    assert not tmp.exists() and rows_seen(tmp_path) == before


def test_readers_during_compaction_see_every_row_once(root: str) -> None:
    tmp_path = root
    # an object store answers each request in ~5 ms here (moto): fewer files, fewer steps
    batches, step, reads = (40, 40, 5) if Store(root).local else (12, 30, 2)
    total = write_batches(tmp_path, partitions=3, batches=batches, per_batch=10)
    counts: list[int] = []
    stop = threading.Event()

    errors: list[BaseException] = []

    def read() -> None:  # as the API reads: a file that vanished between listing and opening is listed again
        try:
            while not stop.is_set():
                con = connect(tmp_path)
                (rows, distinct), *_ = query(con, "SELECT count(*), count(DISTINCT event_id || dt) FROM scores")[1]
                counts.append(rows if rows == distinct else -1)
                con.close()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for safe in range(step, batches * 10 + 1, step):  # compaction in steps, as the committed offsets advance
            compact(tmp_path, {(TOPIC, p): safe for p in range(3)}, min_age_s=0, max_rows=60)
            time.sleep(0.25)  # a step every 0.25 s: far more often than a real deployment compacts
    finally:
        stop.set()
        reader.join()
    assert not errors and len(counts) >= reads and set(counts) == {total}
    assert len(files(tmp_path)) < 3 * batches * 2


def test_the_writer_replays_after_compaction_without_touching_compacted_ranges(tmp_path: Path) -> None:
    write_batches(tmp_path, partitions=1)
    compact(tmp_path, {(TOPIC, 0): 100}, min_age_s=0)
    before = rows_seen(tmp_path)
    # a restarted worker replays from the committed offset 100, cut differently (100..124, 125..149)
    writer = PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA)
    for first, last in ((100, 124), (125, 149)):
        rows = [r for r in before if int(r[0].split("-")[1]) * 10 >= first and int(r[0].split("-")[1]) * 10 <= last]
        writer.write(TOPIC, 0, first, last, [
            {"event_id": e, "ts": ts, "app": "chat", "metric": "m", "value": v} for e, ts, v, _ in rows
        ])  # fmt: skip
    assert rows_seen(tmp_path) == before
    spans = [parse_file_name(n.split("/")[1]) for n in files(tmp_path)]
    assert {(s.first_offset, s.last_offset, s.compacted) for s in spans if s} == {
        (0, 99, True),
        (100, 124, False),
        (125, 149, False),
    }


def test_a_long_lived_catalog_follows_datasets_appearing_and_vanishing(tmp_path: Path) -> None:
    from sinks.catalog import Catalog

    catalog = Catalog(tmp_path)
    assert catalog.cursor().execute("SELECT count(*) FROM scores").fetchone() == (0,)
    total = write_batches(tmp_path, partitions=1, batches=2)
    assert catalog.cursor().execute("SELECT count(*) FROM scores").fetchone() == (total,)
    compact(tmp_path, {(TOPIC, 0): 100}, min_age_s=0)
    assert catalog.cursor().execute("SELECT count(*) FROM scores").fetchone() == (total,)
    for path in (tmp_path / "scores").glob("dt=*/*.parquet"):
        path.unlink()
    assert catalog.cursor().execute("SELECT count(*) FROM scores").fetchone() == (0,)
