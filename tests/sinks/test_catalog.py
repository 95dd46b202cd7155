"""The DuckDB catalog: views over the datasets, robust to files a replay replaces."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from sinks.catalog import connect
from sinks.parquet import PartitionedParquetWriter
from sinks.schemas import EVENTS_SCHEMA, SCORES_SCHEMA
from streams.sdk.schema import validate_event
from streams.worker.rows import event_row
from tests.helpers import score


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
    # outside a transaction the ROLLBACK (that would end the read-only one of an API request) is refused, harmlessly
    assert (columns, rows, calls[1:]) == (["n"], [(1,)], ["ROLLBACK", "SELECT count(*) AS n FROM scores"])

    calls.clear()
    real_execute("BEGIN TRANSACTION READ ONLY")  # as an API request's cursor: after the error, a new one is begun
    columns, rows = query(Flaky(), "SELECT count(*) AS n FROM scores")  # type: ignore[arg-type]
    assert (rows, calls[1:]) == (
        [(1,)],
        ["ROLLBACK", "BEGIN TRANSACTION READ ONLY", "SELECT count(*) AS n FROM scores"],
    )
    with pytest.raises(duckdb.Error, match="read-only"):
        real_execute("CREATE TABLE t (a INTEGER)")


def test_connect_during_a_replay_that_emptied_a_dataset(tmp_path: Path) -> None:
    """A replay deleted a dataset's only files before rewriting them (seen in CI: DuckDB raised "No files
    found" from connect): the view is empty for now instead of an error."""
    (tmp_path / "events" / "dt=2026-11-26").mkdir(parents=True)  # the folder stays, its file is gone
    con = connect(tmp_path)
    for view in ("events", "scores", "embeddings", "dlq"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)
