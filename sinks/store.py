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
import os
import posixpath
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

S3_SCHEME = "s3://"


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


def is_remote(root: str | Path) -> bool:
    """Whether ``root`` names an object store rather than a local folder.

    >>> is_remote("s3://bucket/prefix"), is_remote("evalstream-data")
    (True, False)
    """
    return isinstance(root, str) and root.startswith(S3_SCHEME)


class Store:
    """The data root ``root``: a local folder (``str`` or ``Path``) or ``s3://bucket/prefix[?query]``."""

    def __init__(self, root: str | Path) -> None:
        self.local = not is_remote(root)
        if self.local:
            self.root: Path | None = Path(root)
            self.fs: fs.FileSystem = fs.LocalFileSystem()
            self.base = str(self.root)
        else:
            self.root = None
            self.fs, base = fs.FileSystem.from_uri(str(root))
            self.base = base.rstrip("/")  # "bucket/prefix": pyarrow's S3 paths have no scheme

    def __repr__(self) -> str:
        return f"Store({self.base!r})" if self.local else f"Store({S3_SCHEME + self.base!r})"

    def path(self, rel: str) -> str:
        """``rel`` as a path of :attr:`fs` (``bucket/prefix/rel`` on S3)."""
        return posixpath.join(self.base, rel) if rel else self.base

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

    return S3ArrowFS(filesystem)
