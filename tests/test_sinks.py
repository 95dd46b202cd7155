from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

from sinks.catalog import connect
from sinks.parquet import PartitionedParquetWriter, file_name
from sinks.records import EVENTS_SCHEMA, SCORES_SCHEMA, event_row
from streams.schema import validate_event


def score(event_id: str, ts: datetime, value: float = 1.0) -> dict:
    return {
        "event_id": event_id,
        "generation_id": "g",
        "ts": ts,
        "app": "a",
        "route": "r",
        "model": "m",
        "prompt_version": "v",
        "metric": "x",
        "value": value,
    }


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


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


def test_replay_overwrites_instead_of_duplicating(tmp_path: Path) -> None:
    day = datetime(2026, 11, 25, 12)
    first_run = PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA)
    first_run.write("t", 0, 0, 9, [score(f"e{i}", day) for i in range(10)])
    first_run.write("t", 0, 10, 29, [score(f"e{i}", day) for i in range(10, 30)])  # written, never committed
    first_run.write("t", 1, 0, 4, [score(f"p1-{i}", day) for i in range(5)])
    # crash; the offsets committed were 0..9 of partition 0. The replay batches differently:
    replay = PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA)
    replay.write("t", 0, 10, 19, [score(f"e{i}", day) for i in range(10, 20)])
    con = connect(tmp_path)
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


def test_views_exist_before_any_file_and_expose_dt(tmp_path: Path) -> None:
    con = connect(tmp_path)
    for view in ("events", "scores", "dlq"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)
    assert "dt" in [d[0] for d in con.execute("SELECT * FROM events").description]
    ev = validate_event(
        {
            "type": "edit",
            "event_id": "e",
            "ts": "2026-11-25T23:30:00-02:00",
            "session_id": "s",
            "app": "a",
            "generation_id": "g",
            "edited_output": "x",
            "note": "kept",
        }
    )
    PartitionedParquetWriter(tmp_path, "events", EVENTS_SCHEMA).write("t", 0, 7, 7, [event_row(ev, "t", 0, 7)])
    con = connect(tmp_path)
    row = con.execute("SELECT event_id, ts, dt, extra, _offset FROM events").fetchone()
    assert row == ("e", datetime(2026, 11, 26, 1, 30), datetime(2026, 11, 26).date(), '{"note": "kept"}', 7)


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


def test_store_text_redacted_or_none_keeps_pii_out_of_rows() -> None:
    from sinks.records import dlq_row

    ev = validate_event(
        {
            "type": "generation",
            "event_id": "e",
            "ts": "2026-11-25T10:00:00Z",
            "session_id": "s",
            "app": "a",
            "generation_id": "g",
            "route": "r",
            "model": "m",
            "prompt_version": "v",
            "input": "I am jane@example.com",
            "output": "ok 123-45-6789",
            "note": "jane@example.com",
        }
    )
    full = event_row(ev, "t", 0, 1)
    assert full["input"] == "I am jane@example.com"
    red = event_row(ev, "t", 0, 1, "redacted")
    assert (red["input"], red["output"]) == ("I am [EMAIL]", "ok [SSN]")
    assert "jane" not in red["extra"]
    none = event_row(ev, "t", 0, 1, "none")
    assert none["input"] is None and none["output"] is None and "jane" not in none["extra"]
    assert none["model"] == "m"  # labels are not text
    assert (
        dlq_row("bad", "t", 0, 1, b"k", b'{"email": "jane@example.com"', "redacted")["value"] == b'{"email": "[EMAIL]"'
    )
    assert dlq_row("bad", "t", 0, 1, b"k", b"jane@example.com", "none")["value"] is None


def test_query_retries_when_a_file_vanishes(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import duckdb

    from sinks.catalog import query

    PartitionedParquetWriter(tmp_path, "scores", SCORES_SCHEMA).write("t", 0, 0, 0, [score("a", datetime(2026, 1, 1))])
    con = connect(tmp_path)
    calls = []
    real_execute = con.execute

    class Flaky:
        def execute(self, sql, params=None):  # type: ignore[no-untyped-def]
            calls.append(sql)
            if len(calls) == 1:
                raise duckdb.IOException("Cannot open file: No such file or directory")
            return real_execute(sql, params)

    columns, rows = query(Flaky(), "SELECT count(*) AS n FROM scores")  # type: ignore[arg-type]
    assert (columns, rows, len(calls)) == (["n"], [(1,)], 2)


def test_connect_during_a_replay_that_emptied_a_dataset(tmp_path: Path) -> None:
    """A replay deleted a dataset's only files before rewriting them (seen in CI: DuckDB raised "No files
    found" from connect): the view is empty for now instead of an error."""
    (tmp_path / "events" / "dt=2026-11-26").mkdir(parents=True)  # the folder stays, its file is gone
    con = connect(tmp_path)
    for view in ("events", "scores", "embeddings", "dlq"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)


def test_score_row_has_every_score_field() -> None:
    from datetime import datetime

    from sinks.records import SCORES_SCHEMA, score_row
    from streams.scoring import Score

    score = Score("e", "g", datetime(2026, 11, 25), "app", "route", "model", "v1", "novelty", 0.25)
    assert score_row(score) == score._asdict()
    assert list(score_row(score)) == SCORES_SCHEMA.names
