"""FastAPI dependencies: settings and a DuckDB cursor over what the sinks wrote (one per request, from one
:class:`sinks.catalog.Catalog` per data folder, kept for the life of the process).

Example (a fresh data folder: the views exist and are empty)::

    >>> import tempfile
    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> app = FastAPI()
    >>> @app.get("/n")
    ... def n(db: DuckDB) -> int:
    ...     return db.execute("SELECT count(*) FROM scores").fetchone()[0]
    >>> app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=tempfile.mkdtemp())
    >>> TestClient(app).get("/n").json()
    0
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

import duckdb
from fastapi import Depends

from api.settings import ApiSettings, get_settings
from sinks.catalog import Catalog

SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


@lru_cache(maxsize=16)
def get_catalog(data_dir: str) -> Catalog:
    """The views over one data folder, made on first use (not at import) and shared by every request."""
    return Catalog(data_dir)


def get_duckdb(settings: SettingsDep) -> Iterator[duckdb.DuckDBPyConnection]:
    cursor = get_catalog(str(settings.data_dir)).cursor()
    try:
        yield cursor
    finally:
        cursor.close()


DuckDB = Annotated[duckdb.DuckDBPyConnection, Depends(get_duckdb)]
