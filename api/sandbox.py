"""The API's DuckDB database may touch no file outside the data folder, and cannot be reconfigured.

Every value in the API's SQL is a bound parameter and every identifier comes from a fixed list, so a request
cannot change a query. Should one ever manage to, this keeps the damage inside the data folder:
``enable_external_access = false`` with ``allowed_directories`` = the data folder (and the empty schema files of
:mod:`sinks.catalog`) refuses every other file (``read_csv('/etc/passwd')``, ``COPY … TO '/tmp/…'``), the
network, and installing or loading extensions; ``lock_configuration`` then refuses any ``SET`` that would undo it.

The database itself is read-only for requests: each request's cursor runs in a read-only transaction
(:func:`api.deps.get_duckdb`). What that cannot cover (DuckDB 2.0): an allowed directory is allowed for writing as
well as reading, and a read-only transaction does not cover files, so ``COPY … TO`` *inside* the data folder would
still work. The parameters and fixed identifiers are what keep requests from writing there.

Example::

    >>> import tempfile
    >>> import duckdb
    >>> from sinks.catalog import Catalog
    >>> catalog = Catalog(tempfile.mkdtemp())
    >>> restrict_files(catalog)
    >>> cursor = catalog.cursor()
    >>> cursor.execute("SELECT count(*) FROM scores").fetchone()
    (0,)
    >>> cursor.execute("SELECT * FROM read_text('/etc/hostname')")
    Traceback (most recent call last):
    _duckdb.PermissionException: Permission Error: Cannot access file "/etc/hostname" - file system operations ...
    >>> cursor.execute("SET enable_external_access = true")
    Traceback (most recent call last):
    _duckdb.InvalidInputException: Invalid Input Error: Cannot change configuration option ... has been locked
"""

from __future__ import annotations

import os
from pathlib import Path

from sinks.catalog import DATASETS, Catalog, _schema_file
from sinks.store import Store, open_store


def allowed_directories(data_dir: str | Path | Store) -> list[str]:
    """The data folder (an object store's ``s3://bucket/prefix/``) and the folders of the catalog's empty schema
    files (each with a trailing slash, so that ``/data`` does not also allow ``/data-other``)."""
    store = open_store(data_dir)
    schema_roots = {Path(_schema_file(name)).parents[2] for name in DATASETS}  # <tmp>/<dataset>/dt=…/empty.parquet
    local = [*schema_roots, *([store.root] if store.root is not None else [])]
    # as the views name them (absolute) and as DuckDB may resolve them (through symbolic links)
    found = {os.path.abspath(d) for d in local} | {str(Path(d).resolve()) for d in local}
    if store.root is None:
        found.add(store.uri)
    return [f"{d.rstrip('/')}/" for d in sorted(found)]


def restrict_files(catalog: Catalog) -> None:
    """Confine ``catalog``'s database to its data folder and lock its configuration (see the module docstring)."""
    cursor = catalog.cursor()
    try:
        cursor.execute("SET allowed_directories = $dirs", {"dirs": allowed_directories(catalog.store)})
        cursor.execute("SET enable_external_access = false")
        cursor.execute("SET lock_configuration = true")
    finally:
        cursor.close()
