"""The Parquet writer: files named by partition and offsets, atomic, replays overwrite."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

from sinks.catalog import connect
from sinks.parquet import PartitionedParquetWriter, file_name
from sinks.schemas import SCORES_SCHEMA
from tests.helpers import files, score


def test_files_are_named_by_partition_and_offsets_and_split_by_date(tmp_path: Path) -> None:
    w = PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA)
    w.write(
        "llm.events",
        3,
        100,
        102,
        [score("a", datetime(2026, 11, 24, 23, 59)), score("b", datetime(2026, 11, 25, 0, 1))],
    )
    name = "llm.events-00003-00000000000000000100-00000000000000000102.parquet"
    assert file_name("llm.events", 3, 100, 102) == name
    assert files(tmp_path) == [f"scores/dt=2026-11-24/{name}", f"scores/dt=2026-11-25/{name}"]
    assert pq.read_table(tmp_path / "scores" / "dt=2026-11-25" / name).column("event_id").to_pylist() == ["b"]


def test_replay_overwrites_instead_of_duplicating(root: str) -> None:
    day = datetime(2026, 11, 25, 12)
    first_run = PartitionedParquetWriter(root, "scores", SCORES_SCHEMA)
    first_run.write("t", 0, 0, 9, [score(f"e{i}", day) for i in range(10)])
    first_run.write("t", 0, 10, 29, [score(f"e{i}", day) for i in range(10, 30)])  # written, never committed
    first_run.write("t", 1, 0, 4, [score(f"p1-{i}", day) for i in range(5)])
    # crash; the offsets committed were 0..9 of partition 0. The replay batches differently:
    replay = PartitionedParquetWriter(root, "scores", SCORES_SCHEMA)
    replay.write("t", 0, 10, 19, [score(f"e{i}", day) for i in range(10, 20)])
    con = connect(root)
    ids = [r[0] for r in con.execute("SELECT event_id FROM scores").fetchall()]
    assert len(ids) == len(set(ids)), "no duplicates after the replay"
    assert set(ids) == {f"e{i}" for i in range(20)} | {f"p1-{i}" for i in range(5)}
    replay.write("t", 0, 20, 29, [score(f"e{i}", day) for i in range(20, 30)])
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM scores").fetchone() == (35, 35)


def test_leftover_temporary_files_are_removed_and_invisible(tmp_path: Path) -> None:
    w = PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA)
    folder = tmp_path / "scores" / "dt=2026-11-25"
    folder.mkdir(parents=True)
    junk = folder / f".{file_name('t', 0, 0, 5)}.123.tmp"
    junk.write_bytes(b"half a parquet file")
    assert connect(tmp_path).execute("SELECT count(*) FROM scores").fetchone() == (0,)
    w.write("t", 0, 0, 5, [score("a", datetime(2026, 11, 25))])
    assert not junk.exists()
    assert [p.name for p in folder.iterdir()] == [file_name("t", 0, 0, 5)]


def test_an_empty_batch_still_clears_a_replayed_range(tmp_path: Path) -> None:
    PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA).write(
        "t", 0, 5, 9, [score("a", datetime(2026, 11, 25))]
    )
    PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA).write("t", 0, 5, 9, [])
    assert files(tmp_path) == []


def test_writes_are_atomic_renames(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((Path(a).name, Path(b).name)), real_replace(a, b)))
    PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA).write("t", 2, 0, 0, [score("a", datetime(2026, 1, 1))])
    [(src, dst)] = renames
    assert src.startswith(".") and src.endswith(".tmp") and dst == file_name("t", 2, 0, 0)


def test_redelivery_with_other_cuts_never_duplicates(tmp_path: Path) -> None:
    day = datetime(2026, 11, 25, 12)
    w = PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA)
    w.write("t", 0, 0, 9, [score(f"e{i}", day) for i in range(10)])
    w.write("t", 0, 10, 20, [score(f"e{i}", day) for i in range(10, 21)])
    w.write("t", 0, 0, 12, [score(f"e{i}", day) for i in range(13)])  # a seek back, cut differently
    con = connect(tmp_path)
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM scores").fetchone() == (13, 13)
    w.write("t", 0, 13, 20, [score(f"e{i}", day) for i in range(13, 21)])
    assert con.execute("SELECT count(*), count(DISTINCT event_id) FROM scores").fetchone() == (21, 21)


def test_index_limit_falls_back_to_disk(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(PartitionedParquetWriter, "INDEX_LIMIT", 2)
    day = datetime(2026, 11, 25, 12)
    w = PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA)
    for i in range(5):
        w.write("t", 0, i * 10, i * 10 + 9, [score(f"e{j}", day) for j in range(i * 10, i * 10 + 10)])
    w.write("t", 0, 0, 49, [score(f"e{j}", day) for j in range(50)])  # older than the in-memory index
    assert connect(tmp_path).execute("SELECT count(*), count(DISTINCT event_id) FROM scores").fetchone() == (
        50,
        50,
    )
