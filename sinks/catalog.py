"""DuckDB views over what the sinks wrote: ``events``, ``scores``, ``embeddings`` and ``dlq``.

Each view reads ``<data_dir>/<dataset>/dt=*/*.parquet`` (Hive partition column ``dt``, a DATE). A dataset with no
file yet is an empty view with the right columns, so queries work on a fresh install.

Example::

    >>> import tempfile
    >>> con = connect(tempfile.mkdtemp())
    >>> con.execute("SELECT count(*) FROM scores").fetchone()
    (0,)
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pyarrow as pa

from sinks.schemas import DLQ_SCHEMA, EMBEDDINGS_SCHEMA, EVENTS_SCHEMA, SCORES_SCHEMA

DATASETS: dict[str, pa.Schema] = {
    "events": EVENTS_SCHEMA,
    "scores": SCORES_SCHEMA,
    "embeddings": EMBEDDINGS_SCHEMA,
    "dlq": DLQ_SCHEMA,
}


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(data_dir: str | Path, database: str = ":memory:", attempts: int = 3) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per dataset (``events``, ``scores``, ``embeddings``, ``dlq``)."""
    con = duckdb.connect(database)
    root = Path(data_dir)
    for name, schema in DATASETS.items():
        folder = root / name
        pattern = _sql_string(str(folder / "dt=*" / "*.parquet"))
        for attempt in range(attempts):
            try:
                con.execute(
                    f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({pattern}, "
                    "hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true)"
                )
                break
            except duckdb.IOException:
                # DuckDB lists and opens the files to bind the view. No file at all (a fresh install, or a
                # replay that deleted a dataset's only files before rewriting them): an empty view. A file
                # that vanished between listing and opening (a replay replacing it): list again.
                if not any(folder.glob("dt=*/*.parquet")):
                    empty = schema.empty_table().append_column("dt", pa.array([], pa.date32()))
                    con.register(f"_empty_{name}", empty)
                    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _empty_{name}")
                    break
                if attempt == attempts - 1:
                    raise
    return con


def landed_counts(data_dir: str | Path) -> tuple[int, int]:
    """How many rows ``events`` and ``dlq`` hold now (retried while a replay replaces files)."""
    con = connect(data_dir)
    try:
        events = query(con, "SELECT count(*) FROM events")[1][0][0]
        dlq = query(con, "SELECT count(*) FROM dlq")[1][0][0]
        return int(events), int(dlq)  # type: ignore[call-overload]
    finally:
        con.close()


def query(
    con: duckdb.DuckDBPyConnection, sql: str, params: object = None, attempts: int = 5
) -> tuple[list[str], list[tuple[object, ...]]]:
    """Run ``sql`` and fetch all rows, retrying when a file vanished mid-query.

    During a replay the worker replaces files whose offset range it writes again (``sinks.parquet``); a query
    that listed such a file a moment before gets an IO error. The files it finds next time are complete; while
    a replay writes batch after batch, the next try waits a little longer each time (10, 20, 40, 80 ms).
    """
    for attempt in range(attempts):
        try:
            cur = con.execute(sql, params)
            return [d[0] for d in cur.description], cur.fetchall()
        except duckdb.IOException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")
