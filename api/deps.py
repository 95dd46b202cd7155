"""FastAPI dependencies: settings and a DuckDB connection over what the sinks wrote (one per request).

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
from typing import Annotated

import duckdb
from fastapi import Depends

from api.settings import ApiSettings, get_settings
from sinks.catalog import connect

SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


def get_duckdb(settings: SettingsDep) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(settings.data_dir)
    try:
        yield con
    finally:
        con.close()


DuckDB = Annotated[duckdb.DuckDBPyConnection, Depends(get_duckdb)]
