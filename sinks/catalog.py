"""DuckDB views over what the sinks wrote: ``events``, ``scores``, ``embeddings`` and ``dlq``, and ``generations``;
over the failure-cluster runs (:mod:`sinks.clusters`): ``cluster_runs``, ``cluster_member_runs``, and the
latest of them, ``clusters`` (one row per cluster id) and ``cluster_members`` (one per generation); and over the
live windows and alerts (:mod:`sinks.alerting`): ``windows``, ``alerts``, ``alert_deliveries``.

Each dataset view reads ``<data_dir>/<dataset>/dt=*/*.parquet`` (Hive partition column ``dt``, a DATE). A dataset
with no file yet is an empty view with the right columns, so queries work on a fresh install. The data folder may
be an object store (``s3://bucket/prefix``, see :mod:`sinks.store`): its filesystem is registered on the connection
and the views read ``s3://`` globs, which DuckDB lists again on every query.

``generations`` is the table people query: one row per generation with its labels and what happened to it
(see :data:`GENERATIONS_VIEW`): the latest thumbs, whether it was regenerated, refreshed or edited, its latest
edit ratio, its quality, similarity, relevance, novelty and guardrail scores, latency, cost and error. The
macros ``wilson_low(k, n)`` and ``wilson_high(k, n)`` give a rate's 95% Wilson interval (``z :=`` another level),
and ``psi(metric, ref_since, ref_until, cur_since, cur_until)`` (a table macro) the PSI of a metric between two
time ranges, as ``/v1/drift`` computes it.

Example::

    >>> import tempfile
    >>> con = connect(tempfile.mkdtemp())
    >>> con.execute("SELECT count(*) FROM scores").fetchone()
    (0,)
    >>> con.execute("SELECT count(*) FROM generations").fetchone()
    (0,)
    >>> con.execute("SELECT round(wilson_low(81, 263), 4), round(wilson_high(81, 263), 4)").fetchone()
    (0.2553, 0.3662)
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sinks.alerting import ALERTS_SCHEMA, DELIVERIES_SCHEMA, WINDOWS_SCHEMA
from sinks.clusters import CLUSTER_MEMBERS_SCHEMA, CLUSTER_RUNS_SCHEMA
from sinks.parquet import COMPACTED_VISIBLE_AFTER_S
from sinks.schemas import DLQ_SCHEMA, EMBEDDINGS_SCHEMA, EVENTS_SCHEMA, SCORES_SCHEMA
from sinks.store import Store, open_store

DATASETS: dict[str, pa.Schema] = {
    "events": EVENTS_SCHEMA,
    "scores": SCORES_SCHEMA,
    "embeddings": EMBEDDINGS_SCHEMA,
    "dlq": DLQ_SCHEMA,
    "cluster_runs": CLUSTER_RUNS_SCHEMA,
    "cluster_member_runs": CLUSTER_MEMBERS_SCHEMA,
    "windows": WINDOWS_SCHEMA,
    "alerts": ALERTS_SCHEMA,
    "alert_deliveries": DELIVERIES_SCHEMA,
}

# The latest failure-cluster run's word on each generation and each cluster id (sinks.clusters writes the runs).
# A generation's latest run is the latest one whose window and scope held it; if that run placed it in no
# cluster, it has no row here, whatever older runs said.
CLUSTER_VIEWS = """
CREATE OR REPLACE VIEW cluster_members AS
WITH runs AS (SELECT DISTINCT run_id, run_at, app, route, since, "until" FROM cluster_runs),
latest AS (
    SELECT e.generation_id, arg_max(r.run_id, r.run_at) AS run_id
    FROM events e JOIN runs r
      ON e.ts >= r.since AND e.ts < r."until" AND (r.app IS NULL OR e.app = r.app)
     AND (r.route IS NULL OR e.route = r.route)
    WHERE e.type = 'generation'
    GROUP BY e.generation_id
)
SELECT m.cluster_id, m.generation_id, m.run_at, m.run_id, m.failed, m.similarity
FROM cluster_member_runs m JOIN latest USING (generation_id, run_id);
CREATE OR REPLACE VIEW judgements AS
SELECT j.generation_id, j.judge, j.judge_version, j.score, j.label, j.reason, j.parsed, j.raw_answer, j.tokens_in,
       j.tokens_out, j.ts, g.app, g.route, g.model, g.prompt_version, g.index_version
FROM events j LEFT JOIN (SELECT generation_id, app, route, model, prompt_version, index_version FROM events
                         WHERE type = 'generation') g USING (generation_id)
WHERE j.type = 'judgement';
CREATE OR REPLACE VIEW clusters AS
SELECT * EXCLUDE (centroid, dt)
FROM cluster_runs
QUALIFY row_number() OVER (PARTITION BY cluster_id ORDER BY run_at DESC, run_id DESC) = 1;
"""


# Outcomes of each generation from the scores (which hold one row per value): regenerated and refreshed are
# 1 or absent, so absent means 0; thumbs, feedback score and edit ratio are the latest of their kind.
GENERATIONS_VIEW = """
CREATE OR REPLACE VIEW generations AS
WITH outcomes AS (
    SELECT generation_id,
           arg_max(value, ts) FILTER (WHERE metric = 'thumbs_up') AS thumbs_up,
           count(*) FILTER (WHERE metric = 'thumbs_up') AS feedbacks,
           arg_max(value, ts) FILTER (WHERE metric = 'feedback_score') AS feedback_score,
           max(value) FILTER (WHERE metric = 'regenerated') AS regenerated,
           max(value) FILTER (WHERE metric = 'refreshed') AS refreshed,
           count(*) FILTER (WHERE metric = 'edit_ratio') AS edits,
           arg_max(value, ts) FILTER (WHERE metric = 'edit_ratio') AS edit_ratio,
           max(value) FILTER (WHERE metric = 'quality') AS quality,
           max(value) FILTER (WHERE metric = 'semantic_similarity') AS semantic_similarity,
           max(value) FILTER (WHERE metric = 'relevance') AS relevance,
           max(value) FILTER (WHERE metric = 'novelty') AS novelty,
           max(value) FILTER (WHERE metric = 'guardrail_flag') AS guardrail_flag,
           max(value) FILTER (WHERE metric = 'pii_output') AS pii_output
    FROM scores
    WHERE generation_id IS NOT NULL
    GROUP BY generation_id
)
SELECT e.generation_id, e.ts, e.app, e.route, e.model, e.prompt_version, e.index_version, e.tags, e.session_id,
       e.trace_id,
       e.latency_ms, e.tokens_in, e.tokens_out, e.cost_usd,
       CAST(e.error IS NOT NULL AS INTEGER) AS error, e.error AS error_message,
       o.thumbs_up, coalesce(o.feedbacks, 0) AS feedbacks, o.feedback_score,
       CAST(coalesce(o.regenerated, 0) AS INTEGER) AS regenerated,
       CAST(coalesce(o.refreshed, 0) AS INTEGER) AS refreshed,
       CAST(coalesce(o.edits, 0) > 0 AS INTEGER) AS edited, o.edit_ratio,
       o.quality, o.semantic_similarity, o.relevance, o.novelty, o.guardrail_flag, o.pii_output,
       e.dt
FROM events e LEFT JOIN outcomes o USING (generation_id)
WHERE e.type = 'generation'
"""


# Building blocks for analysts (the same formulas as metrics.stats and metrics.drift): a rate's Wilson score
# interval, and the PSI of a metric between two time ranges over the reference's deciles (empty bins count 1e-4).
MACROS = """
CREATE OR REPLACE MACRO psi(m, ref_since, ref_until, cur_since, cur_until) AS TABLE
    WITH edges AS (
        SELECT list_sort(list_distinct(quantile_cont(value, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))) AS e
        FROM scores WHERE metric = m AND ts >= ref_since AND ts < ref_until
    ), binned AS (
        SELECT (ts >= ref_since AND ts < ref_until) AS is_ref, len(list_filter(e, lambda x: x <= value)) AS bin
        FROM scores, edges
        WHERE metric = m AND ((ts >= ref_since AND ts < ref_until) OR (ts >= cur_since AND ts < cur_until))
    ), totals AS (
        SELECT count(*) FILTER (WHERE is_ref) AS n_ref, count(*) FILTER (WHERE NOT is_ref) AS n_cur FROM binned
    ), shares AS (
        SELECT greatest(count(*) FILTER (WHERE is_ref) / any_value(n_ref), 1e-4) AS p,
               greatest(count(*) FILTER (WHERE NOT is_ref) / any_value(n_cur), 1e-4) AS q
        FROM range(0, (SELECT len(e) + 1 FROM edges)) AS b(bin) LEFT JOIN binned USING (bin), totals
        GROUP BY b.bin
    )
    SELECT sum((q - p) * ln(q / p)) AS psi FROM shares;
CREATE OR REPLACE MACRO wilson_low(k, n, z := 1.959963984540054) AS
    CASE WHEN n > 0 THEN greatest(0.0, (k / n + z * z / (2 * n)
        - z * sqrt((k / n) * (1 - k / n) / n + z * z / (4 * n * n))) / (1 + z * z / n)) END;
CREATE OR REPLACE MACRO wilson_high(k, n, z := 1.959963984540054) AS
    CASE WHEN n > 0 THEN least(1.0, (k / n + z * z / (2 * n)
        + z * sqrt((k / n) * (1 - k / n) / n + z * z / (4 * n * n))) / (1 + z * z / n)) END;
"""


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# Tries of a read whose files vanished mid-way (a replay or a compaction replacing them), waiting 10 ms, then twice
# as long each time (2.5 s in all): an object store's slower listing and opening leave a wider window to lose.
ATTEMPTS = 8

_SCHEMA_FILES: dict[str, str] = {}
_SCHEMA_LOCK = threading.Lock()


def _schema_file(name: str) -> str:
    """An empty Parquet file with every column of dataset ``name``, in a temporary folder of this process: read
    with the dataset's files (``union_by_name``), it gives the view the columns files written before a column
    existed lack (as NULL). One per dataset and process, also when threads ask at once (the API's sandbox allows
    exactly these folders)."""
    with _SCHEMA_LOCK:
        if name not in _SCHEMA_FILES:
            folder = Path(tempfile.mkdtemp(prefix="evalstream-schema-")) / name / "dt=1970-01-01"
            folder.mkdir(parents=True)
            pq.write_table(DATASETS[name].empty_table(), folder / "empty.parquet")
            _SCHEMA_FILES[name] = str(folder / "empty.parquet")
        return _SCHEMA_FILES[name]


def _dataset_view(name: str, pattern: str) -> str:
    """A dataset's view: every file of the glob ``pattern`` but those a *counting* ``.compacted`` file of the same
    folder and source partition covers (the inputs of a compaction, until a later run deletes them), and but the
    compacted files that do not count yet (see :mod:`sinks.compaction`), so a reader never sees a row twice or
    misses one. A compacted file counts once the time in its name is :data:`COMPACTED_VISIBLE_AFTER_S` older than
    the query's ``now()`` (its transaction's start: the same for the whole query). File names compare as text:
    offsets are zero-padded. Columns that no file has yet (files from before they existed) read as NULL."""
    parts = r"'^(.*)/([^/]+)-(\d{5})-(\d{20})-(\d{20})(\.compacted(?:-(\d{13}))?)?\.parquet$'"
    fields = "['dir', 'topic', 'part', 'first', 'last', 'compacted', 'at']"
    files = f"[{pattern}, {_sql_string(_schema_file(name))}]"
    counts_ms = int(COMPACTED_VISIBLE_AFTER_S * 1000)
    return f"""
        CREATE OR REPLACE VIEW {name} AS
        SELECT * EXCLUDE (filename)
        FROM read_parquet({files}, hive_partitioning = true, hive_types = {{'dt': DATE}}, union_by_name = true,
                          filename = true)
        WHERE filename NOT IN (
            WITH f AS (SELECT file, regexp_extract(file, {parts}, {fields}) AS r FROM glob({pattern})),
            c AS (SELECT file, r, coalesce(TRY_CAST(r.at AS BIGINT), 0) <= epoch_ms(now()) - {counts_ms}
                  AS counts FROM f)
            SELECT file FROM c WHERE NOT counts
            UNION ALL
            SELECT s.file FROM c AS s JOIN c AS b
              ON b.r.compacted <> '' AND b.counts AND s.file <> b.file AND s.r.dir = b.r.dir
             AND s.r.topic = b.r.topic AND s.r.part = b.r.part AND b.r.first <= s.r.first AND s.r.last <= b.r.last
        )"""


_VANISHED = ("FileNotFoundError", "No such file", "NO_SUCH_KEY")  # as Python, the OS and S3 (via pyarrow) say it


def file_vanished(exc: duckdb.Error) -> bool:
    """Whether DuckDB failed because a file it listed was gone when it opened it (or no file matched): an IO error
    for a local folder; for an object store, read through a registered Python filesystem, a plain ``Error``
    carrying Python's ``FileNotFoundError``."""
    if isinstance(exc, duckdb.IOException):
        return True
    return type(exc) is duckdb.Error and any(mark in str(exc) for mark in _VANISHED)


def _has_files(store: Store, name: str) -> bool:
    """Whether dataset ``name`` has a Parquet file (in an object store: any, at any depth)."""
    if store.root is not None:
        return next((store.root / name).glob("dt=*/*.parquet"), None) is not None
    return store.has_files(name, ".parquet")


def _define_views(con: duckdb.DuckDBPyConnection, store: Store, attempts: int = ATTEMPTS) -> frozenset[str]:
    """(Re)define every view on ``con``; returns the datasets that had no file (empty views)."""
    store.register(con)
    empty = set()
    for name, schema in DATASETS.items():
        pattern = _sql_string(store.url(f"{name}/dt=*/*.parquet"))
        for attempt in range(attempts):
            try:
                con.execute(_dataset_view(name, pattern))
                break
            except duckdb.Error as exc:
                if not file_vanished(exc):
                    raise
                # DuckDB lists and opens the files to bind the view. No file at all (a fresh install, or a
                # replay that deleted a dataset's only files before rewriting them): an empty view. A file
                # that vanished between listing and opening (a replay replacing it): list again.
                if not _has_files(store, name):
                    table = schema.empty_table().append_column("dt", pa.array([], pa.date32()))
                    # a table of the database, not a registered Arrow object: cursors must see it too
                    con.register("_arrow_empty", table)
                    con.execute(f"CREATE OR REPLACE TABLE _empty_{name} AS SELECT * FROM _arrow_empty")
                    con.unregister("_arrow_empty")
                    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _empty_{name}")
                    empty.add(name)
                    break
                if attempt == attempts - 1:
                    raise
                time.sleep(0.01 * 2**attempt)
    for attempt in range(attempts):  # binding these reads the files' footers again: retried as above
        try:
            con.execute(MACROS)
            con.execute(GENERATIONS_VIEW)
            con.execute(CLUSTER_VIEWS)
            break
        except duckdb.Error as exc:
            if not file_vanished(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.01 * 2**attempt)
    return frozenset(empty)


def connect(
    data_dir: str | Path | Store, database: str = ":memory:", attempts: int = ATTEMPTS
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view per dataset (``events``, ``scores``, ``embeddings``, ``dlq``, the cluster
    runs) and the views built on them; ``data_dir`` may be an object store (``s3://bucket/prefix``)."""
    con = duckdb.connect(database)
    _define_views(con, open_store(data_dir), attempts)
    return con


class Catalog:
    """One in-memory DuckDB database with the views, for a long-running reader such as the API: each request
    takes a cursor (cursors of one database may run in parallel threads), instead of paying for a new
    connection and its views every time.

    A view over a dataset that had no file is an empty table, and a dataset whose files all vanished cannot be
    read through its glob: :meth:`cursor` defines the views again when a dataset gained its first file or
    lost its last one. Finding that out lists every dataset, which costs a request per dataset in an object
    store: there it is done at most every ``recheck_s`` seconds (default 5 s; 0 in a local folder, where it is
    cheap), so a dataset's first file may take that long to appear.

    >>> import tempfile
    >>> catalog = Catalog(tempfile.mkdtemp())
    >>> catalog.cursor().execute("SELECT count(*) FROM generations").fetchone()
    (0,)
    """

    def __init__(self, data_dir: str | Path | Store, recheck_s: float | None = None) -> None:
        self.store = open_store(data_dir)
        self.recheck_s = recheck_s if recheck_s is not None else (0.0 if self.store.local else 5.0)
        self._con = duckdb.connect()
        self._lock = threading.Lock()
        self._empty = _define_views(self._con, self.store)
        self._checked = time.monotonic()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if time.monotonic() - self._checked >= self.recheck_s:
                empty = frozenset(name for name in DATASETS if not _has_files(self.store, name))
                if empty != self._empty:
                    self._empty = _define_views(self._con, self.store)
                self._checked = time.monotonic()
            return self._con.cursor()


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
    con: duckdb.DuckDBPyConnection, sql: str, params: object = None, attempts: int = ATTEMPTS
) -> tuple[list[str], list[tuple[object, ...]]]:
    """Run ``sql`` and fetch all rows, retrying when a file vanished mid-query.

    During a replay the worker replaces files whose offset range it writes again (``sinks.parquet``); a query
    that listed such a file a moment before gets an IO error. The files it finds next time are complete; while
    a replay writes batch after batch, the next try waits a little longer each time (10, 20, 40, … ms).
    """
    for attempt in range(attempts):
        try:
            cur = con.execute(sql, params)
            return [d[0] for d in cur.description], cur.fetchall()
        except duckdb.Error as exc:
            if not file_vanished(exc) or attempt == attempts - 1:
                raise
            _restart_transaction(con)
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")


READ_ONLY = "BEGIN TRANSACTION READ ONLY"  # the API's transactions (api.deps.get_duckdb): the only ones opened


def _restart_transaction(con: duckdb.DuckDBPyConnection) -> None:
    """After an error inside a transaction DuckDB refuses every statement until it ends: end it and open the
    read-only one again (a connection outside any transaction, as ``evalstream sql``'s, is left as it is)."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        return  # no transaction was open
    con.execute(READ_ONLY)


def query_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: object = None, attempts: int = ATTEMPTS) -> pa.Table:
    """:func:`query`, returning an Arrow table (for large or list-valued results such as embeddings)."""
    for attempt in range(attempts):
        try:
            return con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            if not file_vanished(exc) or attempt == attempts - 1:
                raise
            _restart_transaction(con)
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")
