"""Where the Parquet datasets live: a local folder, or an S3-compatible object store (``s3://bucket/prefix``).

A :class:`Store` names files by their path relative to the data root (``scores/dt=2026-11-25/x.parquet``) and
offers what the sinks need: write a table as Parquet durably, list the files under a relative prefix, delete a
file, and let DuckDB read them (:meth:`Store.register`, :meth:`Store.url`).

- **Local folder**: a write goes to a hidden temporary file that is fsynced and renamed, then the folder is
  fsynced (:func:`write_atomic`); once it returns the file is durable.
- **S3**: ``s3://bucket/prefix``, with the endpoint from ``AWS_ENDPOINT_URL`` (or the URL's query, e.g.
  ``?endpoint_override=http://127.0.0.1:9000``) and the credentials and region from the usual ``AWS_*``
  variables (or ``s3://KEY:SECRET@bucket/prefix``), as :meth:`pyarrow.fs.FileSystem.from_uri` reads them. A
  write is a single PUT: an object is visible only once complete, so it needs no temporary object or rename.
  Deleting the last object of a "folder" leaves a ``folder/`` marker object (pyarrow's doing): listings return
  files only. DuckDB reads ``s3://`` through this store's filesystem registered on its connection (DuckDB's
  httpfs extension is not needed), so every read runs in Python: correct, but slower than a local folder.

Example::

    >>> import tempfile, pyarrow as pa
    >>> store = Store(tempfile.mkdtemp())
    >>> store.local
    True
    >>> _ = store.write_parquet("scores/dt=2026-11-25/a.parquet", pa.table({"v": [1, 2]}))
    >>> store.list_files("scores")
    ['scores/dt=2026-11-25/a.parquet']
    >>> store.url("scores/dt=*/*.parquet").endswith("/scores/dt=*/*.parquet")
    True
    >>> store.delete("scores/dt=2026-11-25/a.parquet")
    >>> store.list_files("scores"), store.has_files("scores", ".parquet")
    ([], False)
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow import fs
from pydantic import BeforeValidator

S3_SCHEME = "s3://"
_WHOLE_READ_BYTES = 32 << 20  # DuckDB reads a file no larger than this from S3 in one request


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    folder: Path, name: str, table: pa.Table, compression: str = "zstd", row_group_size: int | None = None
) -> Path:
    """``table`` as ``folder/name``, durably: a hidden temporary file, fsynced, renamed, the folder fsynced."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    pq.write_table(table, tmp, compression=compression, row_group_size=row_group_size)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(folder)
    return final


class StoreError(RuntimeError):
    """The data folder cannot be used (an object store that cannot be reached, a missing bucket, no access)."""


class FileStat(NamedTuple):
    rel: str  # relative to the store's root
    size: int  # bytes
    mtime: float  # seconds since the epoch


def is_remote(root: str | Path) -> bool:
    """Whether ``root`` names an object store rather than a local folder.

    >>> is_remote("s3://bucket/prefix"), is_remote("evalstream-data")
    (True, False)
    """
    return isinstance(root, str) and root.startswith(S3_SCHEME)


def data_root(value: str | Path) -> str | Path:
    """A data folder setting as the code keeps it: an ``s3://`` URL stays a string (a ``Path`` would collapse
    ``//``), anything else is a local ``Path``; an object-store URL without a bucket is refused.

    >>> data_root("s3://bucket/evalstream"), data_root("evalstream-data")
    ('s3://bucket/evalstream', PosixPath('evalstream-data'))
    >>> data_root("s3:///x")
    Traceback (most recent call last):
    ValueError: an object-store data folder is s3://bucket[/prefix], not 's3:///x'
    """
    text = str(value)
    if not is_remote(text):
        return Path(value)
    if not text.removeprefix(S3_SCHEME).split("/", 1)[0].split("?", 1)[0]:
        raise ValueError(f"an object-store data folder is s3://bucket[/prefix], not {text!r}")
    return text.rstrip("/")


# A data folder setting (the worker's and the API's ``data_dir``): validated by :func:`data_root`
DataRoot = Annotated[Path | str, BeforeValidator(lambda v: data_root(v) if isinstance(v, str | Path) else v)]


def open_store(root: str | Path | Store) -> Store:
    """``root`` as a :class:`Store`; one per distinct root and process (an object store's client is reused)."""
    return root if isinstance(root, Store) else _cached_store(str(root) if is_remote(root) else Path(root))


@lru_cache(maxsize=64)
def _cached_store(root: str | Path) -> Store:
    return Store(root)


class Store:
    """The data root ``root``: a local folder (``str`` or ``Path``) or ``s3://bucket/prefix[?query]``."""

    def __init__(self, root: str | Path) -> None:
        self.local = not is_remote(root)
        if self.local:
            self.root: Path | None = Path(root)
            self.fs: fs.FileSystem = fs.LocalFileSystem()
            self.base = str(self.root.absolute())
        else:
            self.root = None
            self.fs, base = fs.FileSystem.from_uri(str(root))
            self.base = base.rstrip("/")  # "bucket/prefix": pyarrow's S3 paths have no scheme

    def __repr__(self) -> str:
        return f"Store({self.base!r})" if self.local else f"Store({S3_SCHEME + self.base!r})"

    def path(self, rel: str) -> str:
        """``rel`` as a path of :attr:`fs` (``bucket/prefix/rel`` on S3)."""
        return posixpath.join(self.base, rel) if rel else self.base

    @property
    def uri(self) -> str:
        """The root as a user writes it: a local path or ``s3://bucket/prefix``."""
        return str(self.root) if self.root is not None else S3_SCHEME + self.base

    def check(self) -> None:
        """Raise :class:`StoreError`, saying why, when the root cannot be listed (unreachable endpoint, missing
        bucket, refused credentials); a local folder is created if needed."""
        if self.root is not None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"data folder {self.root}: {exc}") from exc
            return
        bucket = self.base.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
            self.fs.get_file_info(fs.FileSelector(self.base, allow_not_found=True))
        except OSError as exc:
            raise StoreError(f"data folder {self.uri}: {exc}") from exc
        if info.type != fs.FileType.Directory:
            raise StoreError(f"data folder {self.uri}: bucket {bucket!r} does not exist (create it first)")

    def url(self, rel: str) -> str:
        """``rel`` (may hold glob characters) as DuckDB reads it: a local path, or ``s3://bucket/prefix/rel``."""
        return str(self.root / rel) if self.root is not None else S3_SCHEME + self.path(rel)

    def write_parquet(
        self, rel: str, table: pa.Table, compression: str = "zstd", row_group_size: int | None = None
    ) -> str:
        """Write ``table`` durably at ``rel`` (replacing any file there); returns its :meth:`path`."""
        if self.root is not None:
            folder, name = posixpath.split(rel)
            return str(write_atomic(self.root / folder, name, table, compression, row_group_size))
        path = self.path(rel)
        pq.write_table(table, path, filesystem=self.fs, compression=compression, row_group_size=row_group_size)
        return path

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Replace the small file ``rel`` with ``data`` atomically (a reader sees the old or the new content),
        without fsync: for files that are rewritten every few seconds, such as the workers' status."""
        if self.root is None:
            with self.fs.open_output_stream(self.path(rel)) as out:
                out.write(data)
            return
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def read_bytes(self, rel: str) -> bytes:
        """The content of ``rel``; FileNotFoundError when it is not there."""
        if self.root is not None:
            return (self.root / rel).read_bytes()
        with self.fs.open_input_stream(self.path(rel)) as src:
            return bytes(src.read())

    def read_table(
        self, rel: str | list[str], schema: pa.Schema | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        """The Parquet file ``rel`` (or files) as one table (with ``schema``: files missing columns read them as
        nulls)."""
        paths = [self.path(r) for r in ([rel] if isinstance(rel, str) else rel)]
        dataset = ds.dataset(paths, schema=schema, format="parquet", filesystem=self.fs)
        return dataset.to_table(columns=columns)

    def num_rows(self, rel: str) -> int:
        """Rows of the Parquet file ``rel``, from its footer."""
        with self.fs.open_input_file(self.path(rel)) as src:
            return int(pq.ParquetFile(src).metadata.num_rows)

    def stat_files(self, rel: str = "") -> list[FileStat]:
        """:meth:`list_files` with each file's size and modification time (one listing on S3)."""
        selector = fs.FileSelector(self.path(rel), recursive=True, allow_not_found=True)
        start = len(self.base) + 1
        found = [
            FileStat(info.path[start:], int(info.size or 0), info.mtime.timestamp() if info.mtime else 0.0)
            for info in self.fs.get_file_info(selector)
            if info.type == fs.FileType.File
        ]
        return sorted(found)

    def list_files(self, rel: str = "") -> list[str]:
        """Every file under ``rel``, recursively, as sorted paths relative to the root (hidden files included;
        folders, and the empty marker objects an object store keeps for them, are not)."""
        if self.root is not None:
            top = self.root / rel
            found: list[str] = []
            for folder, _, names in os.walk(top):
                prefix = Path(folder).relative_to(self.root).as_posix()
                found.extend(posixpath.join(prefix, name) for name in names)
            return sorted(found)
        selector = fs.FileSelector(self.path(rel), recursive=True, allow_not_found=True)
        start = len(self.base) + 1
        return sorted(info.path[start:] for info in self.fs.get_file_info(selector) if info.type == fs.FileType.File)

    def has_files(self, rel: str, suffix: str = "") -> bool:
        """Whether any file whose name ends with ``suffix`` lies under ``rel`` (stops at the first found; on S3
        the newest-named folders are looked at first, one listing per folder level)."""
        pending = [self.path(rel)]
        while pending:
            selector = fs.FileSelector(pending.pop(), recursive=False, allow_not_found=True)
            infos = self.fs.get_file_info(selector)
            if any(i.type == fs.FileType.File and i.base_name.endswith(suffix) for i in infos):
                return True
            pending.extend(sorted(i.path for i in infos if i.type == fs.FileType.Directory))
        return False

    def delete(self, rel: str) -> None:
        """Delete the file ``rel``; nothing happens if it is not there."""
        if self.root is not None:
            (self.root / rel).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(rel))

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let ``con`` (and its cursors) read this store's :meth:`url` patterns: on S3, registers the store's
        filesystem for ``s3://`` (once per connection); a local folder needs nothing."""
        if self.local or "s3" in con.list_filesystems():
            return
        con.register_filesystem(_duckdb_filesystem(self.fs))


class _Contents:
    """The content of recently read small files, by path, size and modification time: DuckDB opens every file of a
    view about three times per query (binding, scanning), and each open is checked with a HEAD request anyway, so
    only the first costs a GET. A file replaced under the same name (a replay of the same offset range) within the
    same second and at the same size could be served as it was: it holds the same messages."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self._files: OrderedDict[str, tuple[int, datetime | None, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, info: fs.FileInfo, filesystem: fs.FileSystem) -> bytes:
        with self._lock:
            hit = self._files.get(info.path)
            if hit is not None and hit[:2] == (info.size, info.mtime):
                self._files.move_to_end(info.path)
                return hit[2]
        with filesystem.open_input_stream(info.path) as src:
            data = bytes(src.read())
        with self._lock:
            old = self._files.pop(info.path, None)
            self._bytes -= len(old[2]) if old is not None else 0
            self._files[info.path] = (info.size, info.mtime, data)
            self._bytes += len(data)
            while self._bytes > self.max_bytes and self._files:
                self._bytes -= len(self._files.popitem(last=False)[1][2])
        return data


_CONTENTS = _Contents()


def _duckdb_filesystem(filesystem: fs.FileSystem) -> Any:
    """``filesystem`` as an fsspec filesystem answering to ``s3://`` paths, which DuckDB can register."""
    from fsspec.implementations.arrow import ArrowFSWrapper

    class S3ArrowFS(ArrowFSWrapper):  # type: ignore[misc]
        protocol = "s3"

        @classmethod
        def _strip_protocol(cls, path: Any) -> Any:
            if isinstance(path, str):
                return path.removeprefix(S3_SCHEME).rstrip("/")
            return path

        def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
            # DuckDB opens a file about three times per query and asks its size and modification time by path
            # after each open: the open's HEAD answers those, and a file of the size the worker writes is read
            # whole in one GET, then served from memory while its size and modification time hold. Every open
            # asks again: a file deleted since the listing fails, as it does locally, and the catalog lists again
            if mode != "rb":
                return super()._open(path, mode, *args, **kwargs)
            info = self._stat(path)
            if info.size > _WHOLE_READ_BYTES:
                return super()._open(path, mode, *args, **kwargs)
            return io.BytesIO(_CONTENTS.get(info, self.fs))

        def _stat(self, path: str) -> fs.FileInfo:
            key = self._strip_protocol(path)
            info = self.fs.get_file_info(key)
            known = self.__dict__.setdefault("_known", {})
            if info.type != fs.FileType.File:
                known.pop(key, None)
                raise FileNotFoundError(path)
            if len(known) > 50_000:
                known.clear()
            known[key] = info
            return info

        def _info(self, path: str) -> fs.FileInfo:
            """What the latest open of ``path`` saw (a HEAD if none)."""
            known = self.__dict__.get("_known", {}).get(self._strip_protocol(path))
            return known if known is not None else self._stat(path)

        def size(self, path: str) -> int:
            return int(self._info(path).size)

        def modified(self, path: str) -> datetime:
            # a file deleted since the listing: FileNotFoundError (fsspec's None fails DuckDB with an
            # AttributeError), so that the catalog lists again (sinks.catalog.file_vanished)
            return self._info(path).mtime or datetime.fromtimestamp(0, UTC)

    return S3ArrowFS(filesystem)
