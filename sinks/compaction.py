"""Compaction: a closed range of small files merged into one file with large row groups, safe for readers,
for crashes and for replays.

The worker writes one file per source partition per batch (a 2 s flush on 6 partitions: ~260,000 files a day),
and DuckDB reads many tiny files and row groups far slower than a few large ones. :func:`compact` merges, per
dataset, date folder and source partition, the files in offset order whose offsets are all below the
partition's *safe* offset (the consumer group's committed offset: those messages are never replayed) and that
are older than ``min_age_s``:

1. the merged rows are written to ``<topic>-<partition>-<first>-<last>.compacted-<time in ms>.parquet`` (the
   inputs' whole offset range, and when) in one atomic step: locally a hidden temporary file, fsynced and renamed
   (the folder fsynced); in an object store a single PUT, which is visible only once complete;
2. the inputs stay: a later run deletes them, once the compacted file has counted for
   :data:`~sinks.parquet.COMPACTED_INPUTS_KEPT_S`.

Readers never see a row twice or miss one. A DuckDB query lists the files twice (the files it reads, and the
names that decide which it hides), and a compaction may happen between the two; so the views of
:mod:`sinks.catalog` ignore a compacted file until the time in its name is
:data:`~sinks.parquet.COMPACTED_VISIBLE_AFTER_S` old, and from then on hide every file whose offset range it
covers (same folder and partition). A compacted file that appeared between a query's two listings does not count
for it, and the inputs it covers are still there for every query that could have listed them. A crash before the
rename leaves a temporary file (removed by the next run) or nothing; after it, the next run carries on. Replays
cannot touch a compacted range: they start at the committed offset, above every range compacted.

Example::

    >>> import tempfile
    >>> from datetime import datetime
    >>> from sinks.parquet import PartitionedParquetWriter
    >>> from sinks.schemas import SCORES_SCHEMA
    >>> root = tempfile.mkdtemp()
    >>> w = PartitionedParquetWriter(root, "scores", SCORES_SCHEMA)
    >>> row = {"ts": datetime(2026, 11, 25), "metric": "m", "value": 1.0}
    >>> for first in (0, 10, 20):
    ...     _ = w.write("llm.events", 0, first, first + 9, [row])
    >>> report = compact(root, {("llm.events", 0): 20}, min_age_s=0, now=1796032800)  # 20.. may be replayed
    >>> report.merged, report.files_in, report.rows
    (1, 2, 2)
    >>> sorted(p.name for p in (Path(root) / "scores").glob("dt=*/*.parquet"))  # doctest: +ELLIPSIS
    ['llm.events-00000-00000000000000000000-00000000000000000009.parquet',
     'llm.events-00000-00000000000000000000-00000000000000000019.compacted-1796032800....parquet',
     'llm.events-00000-00000000000000000010-00000000000000000019.parquet',
     'llm.events-00000-00000000000000000020-00000000000000000029.parquet']
    >>> compact(root, {("llm.events", 0): 20}, min_age_s=0, now=1796032800 + 661).inputs_deleted  # 11 min later
    2
"""

from __future__ import annotations

import posixpath
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from sinks.parquet import COMPACTED_INPUTS_KEPT_S, FileSpan, compacted_name, parse_file_name
from sinks.store import FileStat, Store, open_store

DATASETS = ("events", "scores", "embeddings", "dlq")
ROW_GROUP_ROWS = 250_000
MAX_FILE_ROWS = 2_000_000


@dataclass
class CompactionReport:
    merged: int = 0  # compacted files written
    files_in: int = 0  # files merged into them
    rows: int = 0
    inputs_deleted: int = 0  # inputs of earlier runs' compacted files, kept until those had counted long enough


def covered(spans: list[tuple[FileSpan, str]], before: float | None = None) -> set[str]:
    """The files (of one folder) whose offset range a compacted file of the same partition covers (with ``before``:
    one that had counted for :data:`COMPACTED_INPUTS_KEPT_S` at that time)."""
    compacted = [
        (span, path)
        for span, path in spans
        if span.compacted and (before is None or span.counts(before - COMPACTED_INPUTS_KEPT_S))
    ]
    return {
        path
        for span, path in spans
        for big, big_path in compacted
        if big_path != path and (big.topic, big.partition) == (span.topic, span.partition)
        and big.first_offset <= span.first_offset and span.last_offset <= big.last_offset
    }  # fmt: skip


def _runs(files: list[tuple[FileSpan, str, int]], max_rows: int) -> list[list[tuple[FileSpan, str, int]]]:
    """Consecutive files cut into runs of at most ``max_rows`` rows (a single file is never a run)."""
    runs: list[list[tuple[FileSpan, str, int]]] = [[]]
    total = 0
    for item in files:
        if runs[-1] and total + item[2] > max_rows:
            runs.append([])
            total = 0
        runs[-1].append(item)
        total += item[2]
    return [run for run in runs if len(run) > 1]


def compact_folder(
    store: Store,
    folder: str,
    stats: list[FileStat],
    safe: Mapping[tuple[str, int], int],
    min_age_s: float,
    report: CompactionReport,
    max_rows: int = MAX_FILE_ROWS,
    compression: str = "zstd",
    shift_s: float = 0.0,
) -> None:
    """Compact one date folder (``folder``, relative to the store's root, holding the files ``stats``) of one
    dataset (see the module docstring). The run's clock is the wall clock plus ``shift_s`` (tests and benchmarks
    run "an hour ago"): it stamps the compacted files and decides which inputs may go; files' ages are wall clock."""
    clock = time.time()
    now = clock + shift_s
    for stat in stats:  # an interrupted write, of this module or the sink (local folders only)
        base = posixpath.basename(stat.rel)
        if base.startswith(".") and base.endswith(".tmp") and clock - stat.mtime > 3600:
            store.delete(stat.rel)
    mtimes = {stat.rel: stat.mtime for stat in stats}
    spans = [(span, rel) for rel in mtimes if (span := parse_file_name(posixpath.basename(rel))) is not None]
    gone = covered(spans, before=now)
    for rel in sorted(gone):
        store.delete(rel)
        report.inputs_deleted += 1
    spans = [(span, rel) for span, rel in spans if rel not in gone]
    hidden = covered(spans)  # covered by a compacted file, counting yet or not: merged already
    by_partition: dict[tuple[str, int], list[tuple[FileSpan, str]]] = defaultdict(list)
    for span, rel in spans:
        if rel not in hidden:
            by_partition[(span.topic, span.partition)].append((span, rel))
    for key, files in by_partition.items():
        limit = safe.get(key)
        if limit is None:
            continue
        ready: list[tuple[FileSpan, str, int]] = []
        for span, rel in sorted(files, key=lambda f: f[0].first_offset):
            if span.last_offset >= limit or clock - mtimes[rel] < min_age_s:
                break  # offsets from here on may be replayed, or the files are too fresh: keep the order
            ready.append((span, rel, store.num_rows(rel)))
        for run in _runs(ready, max_rows):
            table = pa.concat_tables([store.read_table(rel) for _, rel, _ in run], promote_options="default")
            first, last = run[0][0].first_offset, run[-1][0].last_offset
            columns = table.drop_columns([c for c in ("dt",) if c in table.column_names])
            # stamped as it is written (a run may take long): it must exist before it counts
            name = compacted_name(key[0], key[1], first, last, time.time() + shift_s)
            store.write_parquet(f"{folder}/{name}", columns, compression, ROW_GROUP_ROWS)
            report.merged += 1
            report.files_in += len(run)
            report.rows += table.num_rows


def compact(
    root: str | Path | Store,
    safe: Mapping[tuple[str, int], int],
    min_age_s: float = 3600,
    datasets: tuple[str, ...] = DATASETS,
    max_rows: int = MAX_FILE_ROWS,
    now: float | None = None,
) -> CompactionReport:
    """Compact every date folder of ``datasets`` under ``root`` (a folder or an object store);
    ``safe[(topic, partition)]`` is the first offset that may still be replayed (the committed offset). Partitions
    not in ``safe`` are left alone. ``now``: the run's time at its start (default the clock); each compacted file
    is stamped with the run's clock when it is written (a run over many folders may take minutes, and a file must
    exist before its stamp lets it count), and the clock decides which inputs of earlier runs may go."""
    shift_s = 0.0 if now is None else now - time.time()
    store = open_store(root)
    report = CompactionReport()
    for dataset in datasets:
        by_folder: dict[str, list[FileStat]] = defaultdict(list)
        for stat in store.stat_files(dataset):
            folder = posixpath.dirname(stat.rel)
            if posixpath.basename(folder).startswith("dt=") and posixpath.dirname(folder) == dataset:
                by_folder[folder].append(stat)
        for folder, stats in sorted(by_folder.items()):
            compact_folder(store, folder, stats, safe, min_age_s, report, max_rows, shift_s=shift_s)
    return report
