"""Durable, replay-safe Parquet files, one per source topic-partition and offset range.

A file holds rows produced by the messages ``first..last`` of one source partition and is named after them::

    <root>/<dataset>/dt=2026-11-25/llm.events-00003-00000000000000001200-00000000000000001456.parquet

Writes go to a hidden temporary file that is fsynced and atomically renamed, then the folder is fsynced: once
``write()`` returns the file is durable, and only then may the caller commit the offsets. A crash before the
commit replays the same offsets; a replayed batch may be cut at other offsets than the first time, so every
write first deletes the files of its partition whose offset range overlaps its own (earlier writes of the same
messages). No offset is ever stored twice, and a replay ends with every offset stored once.

The root may also be an object store (``s3://bucket/prefix``, see :mod:`sinks.store`): there a write is a
single PUT, which is atomic and durable once it returns.

Example::

    >>> import tempfile, pyarrow as pa
    >>> root = tempfile.mkdtemp()
    >>> w = PartitionedParquetWriter(root, "scores", pa.schema([("ts", pa.timestamp("us")), ("v", pa.int64())]))
    >>> from datetime import datetime
    >>> [p.name for p in w.write("t", 0, 10, 11, [{"ts": datetime(2026, 11, 25), "v": 1}])]
    ['t-00000-00000000000000000010-00000000000000000011.parquet']
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa

from sinks.store import Store
from sinks.store import write_atomic as write_atomic  # where sinks.compaction, .alerting and .clusters import it

_NAME = re.compile(
    r"^(?P<topic>.+)-(?P<partition>\d{5})-(?P<first>\d{20})-(?P<last>\d{20})"
    r"(?P<compacted>\.compacted(?:-(?P<at>\d{13}))?)?\.parquet$"
)

# A compacted file counts (its rows are read, the files it covers are hidden) only once the time in its name is this
# old: longer than writing it takes and than the clocks of the machines differ. A query reads the file list twice
# (the files, and the names that decide what is hidden), so a compacted file that appeared between the two would
# otherwise hide inputs the query never reads it in place of.
COMPACTED_VISIBLE_AFTER_S = 60.0
# The files a compacted file covers are deleted (by a later compaction run) only this long after it counts: longer
# than any query runs, so a query that listed them still finds them, and hides them.
COMPACTED_INPUTS_KEPT_S = 600.0


def file_name(topic: str, partition: int, first_offset: int, last_offset: int) -> str:
    return f"{topic}-{partition:05d}-{first_offset:020d}-{last_offset:020d}.parquet"


def compacted_name(topic: str, partition: int, first_offset: int, last_offset: int, at: float) -> str:
    """The name of a compacted file of that range, written at ``at`` (seconds since the epoch, kept to the ms).

    >>> compacted_name("llm.events", 3, 0, 42, 1796032800.5)
    'llm.events-00003-00000000000000000000-00000000000000000042.compacted-1796032800500.parquet'
    """
    base = file_name(topic, partition, first_offset, last_offset).removesuffix(".parquet")
    return f"{base}.compacted-{round(at * 1000):013d}.parquet"


class FileSpan(NamedTuple):
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    compacted: bool = False  # merged by sinks.compaction from the files of its range
    compacted_at: float | None = None  # when (seconds since the epoch); None for names without a time (older ones)

    def counts(self, now: float) -> bool:
        """Whether a reader at ``now`` reads this file (every file but a compacted one younger than
        :data:`COMPACTED_VISIBLE_AFTER_S`)."""
        return self.compacted_at is None or self.compacted_at <= now - COMPACTED_VISIBLE_AFTER_S


def parse_file_name(name: str) -> FileSpan | None:
    """What :func:`file_name` encoded; None for any other name.

    >>> parse_file_name(file_name("llm.events", 3, 10, 42))
    FileSpan(topic='llm.events', partition=3, first_offset=10, last_offset=42, compacted=False, compacted_at=None)
    >>> parse_file_name("llm.events-00003-00000000000000000000-00000000000000000042.compacted.parquet").compacted
    True
    >>> parse_file_name(compacted_name("llm.events", 3, 0, 42, 1796032800.5)).compacted_at
    1796032800.5
    """
    match = _NAME.match(name)
    if match is None:
        return None
    at = int(match["at"]) / 1000 if match["at"] else None
    return FileSpan(
        match["topic"], int(match["partition"]), int(match["first"]), int(match["last"]), bool(match["compacted"]), at
    )


class PartitionedParquetWriter:
    """Writes batches of rows for one dataset (``events``, ``scores``, ``dlq``) under ``root/dataset``; ``root``
    is a local folder or a :class:`~sinks.store.Store` (which may be ``s3://bucket/prefix``)."""

    #: newest files remembered per partition; an older range is looked up in the store again
    INDEX_LIMIT = 10_000

    def __init__(
        self,
        root: str | Path | Store,
        dataset: str,
        schema: pa.Schema,
        date_column: str = "ts",
        compression: str = "zstd",
    ) -> None:
        self.store = root if isinstance(root, Store) else Store(root)
        self.dataset = dataset
        #: the dataset's folder, as a path of the store's filesystem (``bucket/prefix/dataset`` on S3)
        self.dir = Path(self.store.path(dataset))
        self.schema = schema
        self.date_column = date_column
        self.compression = compression
        # (topic, partition) -> [(first, last, name, date folders)] sorted by first offset; listed on first use
        self._index: dict[tuple[str, int], list[tuple[int, int, str, tuple[str, ...]]]] = {}

    def forget_partitions(self) -> None:
        """Drop the in-memory file index (call on partition assignment: another process may have written)."""
        self._index.clear()

    def write(
        self, topic: str, partition: int, first_offset: int, last_offset: int, rows: Sequence[dict[str, Any]]
    ) -> list[Path]:
        """Durably write ``rows`` (from offsets ``first..last`` of ``topic``/``partition``); returns the files (on
        S3, their ``bucket/key`` paths).

        Files of the same partition whose offset range overlaps ``first..last`` are earlier writes of the same
        messages (a replay after a crash or a rebalance): they are deleted first, so no offset is ever stored
        twice. Call with empty ``rows`` to only clear the range.
        """
        name = file_name(topic, partition, first_offset, last_offset)
        entries = self._entries(topic, partition, first_offset)
        stale = [e for e in entries if e[0] <= last_offset and e[1] >= first_offset]
        for entry in stale:
            for rel in self._files_of(entry):
                self.store.delete(rel)
            entries.remove(entry)
        by_date: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            stamp = row[self.date_column]
            by_date[stamp.date().isoformat() if isinstance(stamp, datetime) else "unknown"].append(row)
        written = []
        for day, day_rows in sorted(by_date.items()):
            table = pa.Table.from_pylist(day_rows, schema=self.schema)
            written.append(Path(self.store.write_parquet(f"{self.dataset}/dt={day}/{name}", table, self.compression)))
        if written:
            folders = tuple(f"dt={day}" for day in sorted(by_date))
            bisect.insort(entries, (first_offset, last_offset, name, folders))
            del entries[: -self.INDEX_LIMIT]
        return written

    def _files_of(self, entry: tuple[int, int, str, tuple[str, ...]]) -> list[str]:
        """The files of an index entry, relative to the root: locally every date folder's file of that name;
        in an object store (where that would be a listing) the folders it was found in or written to."""
        if self.store.root is not None:
            return [f"{self.dataset}/{p.parent.name}/{p.name}" for p in self.dir.glob(f"dt=*/{entry[2]}")]
        return [f"{self.dataset}/{folder}/{entry[2]}" for folder in entry[3]]

    def _entries(self, topic: str, partition: int, first_offset: int) -> list[tuple[int, int, str, tuple[str, ...]]]:
        key = (topic, partition)
        entries = self._index.get(key)
        if entries is None or (len(entries) >= self.INDEX_LIMIT and first_offset <= entries[0][0]):
            entries = self._index[key] = self._scan(topic, partition)
        return entries

    def _scan(self, topic: str, partition: int) -> list[tuple[int, int, str, tuple[str, ...]]]:
        """The files of one partition in the store; removes temporary files a crash left behind."""
        prefix = f"{topic}-{partition:05d}-"
        found: dict[tuple[int, int, str], list[str]] = defaultdict(list)
        for rel in self.store.list_files(self.dataset):
            parts = rel.split("/")
            if len(parts) != 3 or not parts[1].startswith("dt=") or prefix not in parts[2]:
                continue
            folder, base = parts[1], parts[2]
            if base.startswith(f".{prefix}") and base.endswith(".tmp"):
                self.store.delete(rel)  # a crash mid-write
                continue
            span = parse_file_name(base)
            if span is not None and base.startswith(prefix):
                found[(span.first_offset, span.last_offset, base)].append(folder)
        return sorted((*key, tuple(sorted(folders))) for key, folders in found.items())
