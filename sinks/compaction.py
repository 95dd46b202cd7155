"""Compaction: a closed range of small files merged into one file with large row groups, safe for readers,
for crashes and for replays.

The worker writes one file per source partition per batch (a 2 s flush on 6 partitions: ~260,000 files a day),
and DuckDB reads many tiny files and row groups far slower than a few large ones. :func:`compact` merges, per
dataset, date folder and source partition, the files in offset order whose offsets are all below the
partition's *safe* offset (the consumer group's committed offset: those messages are never replayed) and that
are older than ``min_age_s``:

1. the merged rows are written to a hidden temporary file, fsynced, and renamed to
   ``<topic>-<partition>-<first>-<last>.compacted.parquet`` (the inputs' whole offset range; the folder is
   fsynced);
2. then the inputs are deleted.

Readers never see a row twice or miss one: the DuckDB views of :mod:`sinks.catalog` hide every file whose
offset range a ``.compacted`` file of the same folder and partition covers, so from the rename on, the inputs
are invisible even before they are deleted. A crash before the rename leaves a temporary file (removed by the
next run); a crash after it leaves hidden inputs (deleted by the next run). Replays cannot touch a compacted
range: they start at the committed offset, above every range compacted.

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
    >>> report = compact(root, {("llm.events", 0): 20}, min_age_s=0)  # offsets 20.. may still be replayed
    >>> report.merged, report.files_in, report.rows
    (1, 2, 2)
    >>> sorted(p.name for p in (Path(root) / "scores").glob("dt=*/*.parquet"))  # doctest: +NORMALIZE_WHITESPACE
    ['llm.events-00000-00000000000000000000-00000000000000000019.compacted.parquet',
     'llm.events-00000-00000000000000000020-00000000000000000029.parquet']
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sinks.parquet import FileSpan, file_name, parse_file_name, write_atomic

DATASETS = ("events", "scores", "embeddings", "dlq")
ROW_GROUP_ROWS = 250_000
MAX_FILE_ROWS = 2_000_000


@dataclass
class CompactionReport:
    merged: int = 0  # compacted files written
    files_in: int = 0  # files merged into them
    rows: int = 0
    leftovers_deleted: int = 0  # hidden inputs of an earlier, interrupted run


def covered(spans: list[tuple[FileSpan, Path]]) -> set[Path]:
    """The files (of one folder) whose offset range a compacted file of the same partition covers."""
    compacted = [(span, path) for span, path in spans if span.compacted]
    return {
        path
        for span, path in spans
        for big, big_path in compacted
        if big_path != path and (big.topic, big.partition) == (span.topic, span.partition)
        and big.first_offset <= span.first_offset and span.last_offset <= big.last_offset
    }  # fmt: skip


def _runs(files: list[tuple[FileSpan, Path, int]], max_rows: int) -> list[list[tuple[FileSpan, Path, int]]]:
    """Consecutive files cut into runs of at most ``max_rows`` rows (a single file is never a run)."""
    runs: list[list[tuple[FileSpan, Path, int]]] = [[]]
    total = 0
    for item in files:
        if runs[-1] and total + item[2] > max_rows:
            runs.append([])
            total = 0
        runs[-1].append(item)
        total += item[2]
    return [run for run in runs if len(run) > 1]


def compact_folder(
    folder: Path,
    safe: Mapping[tuple[str, int], int],
    min_age_s: float,
    report: CompactionReport,
    max_rows: int = MAX_FILE_ROWS,
    compression: str = "zstd",
) -> None:
    """Compact one date folder of one dataset (see the module docstring)."""
    for tmp in folder.glob(".*.tmp"):  # an interrupted write, of this module or the sink
        if time.time() - tmp.stat().st_mtime > 3600:
            tmp.unlink(missing_ok=True)
    spans = [(span, path) for path in folder.glob("*.parquet") if (span := parse_file_name(path.name)) is not None]
    hidden = covered(spans)
    for path in hidden:
        path.unlink(missing_ok=True)
        report.leftovers_deleted += 1
    by_partition: dict[tuple[str, int], list[tuple[FileSpan, Path]]] = defaultdict(list)
    for span, path in spans:
        if path not in hidden:
            by_partition[(span.topic, span.partition)].append((span, path))
    now = time.time()
    for key, files in by_partition.items():
        limit = safe.get(key)
        if limit is None:
            continue
        ready: list[tuple[FileSpan, Path, int]] = []
        for span, path in sorted(files, key=lambda f: f[0].first_offset):
            if span.last_offset >= limit or now - path.stat().st_mtime < min_age_s:
                break  # offsets from here on may be replayed, or the files are too fresh: keep the order
            ready.append((span, path, pq.ParquetFile(path).metadata.num_rows))
        for run in _runs(ready, max_rows):
            table = pa.concat_tables([pq.read_table(path) for _, path, _ in run], promote_options="default")
            first, last = run[0][0].first_offset, run[-1][0].last_offset
            name = file_name(key[0], key[1], first, last).removesuffix(".parquet") + ".compacted.parquet"
            columns = table.drop_columns([c for c in ("dt",) if c in table.column_names])
            write_atomic(folder, name, columns, compression, ROW_GROUP_ROWS)
            for _, path, _ in run:
                if path.name != name:
                    path.unlink(missing_ok=True)
            report.merged += 1
            report.files_in += len(run)
            report.rows += table.num_rows


def compact(
    root: str | Path,
    safe: Mapping[tuple[str, int], int],
    min_age_s: float = 3600,
    datasets: tuple[str, ...] = DATASETS,
    max_rows: int = MAX_FILE_ROWS,
) -> CompactionReport:
    """Compact every date folder of ``datasets`` under ``root``; ``safe[(topic, partition)]`` is the first offset
    that may still be replayed (the committed offset). Partitions not in ``safe`` are left alone."""
    report = CompactionReport()
    for dataset in datasets:
        for folder in sorted((Path(root) / dataset).glob("dt=*")):
            if folder.is_dir():
                compact_folder(folder, safe, min_age_s, report, max_rows)
    return report
