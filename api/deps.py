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

import tomllib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

import duckdb
from fastapi import Depends, HTTPException
from pydantic import AfterValidator

from api.sandbox import restrict_files
from api.settings import ApiSettings, get_settings
from metrics.analysis import AnalysisConfigError, check_analysis
from metrics.judges import JudgeConfigError, parse_judges
from sinks.catalog import READ_ONLY, Catalog

SettingsDep = Annotated[ApiSettings, Depends(get_settings)]

# The times a request may name. Python's datetime ends at years 1 and 9999: a time near either end overflows when
# it is turned into UTC, when a window's default start is computed (until - 7 days) or a drift bucket's end (start +
# up to 366 days); kept this far from both ends, none of them can, and the request gets a 422, never a 500.
EARLIEST_TIME = datetime(2, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9998, 1, 1, tzinfo=UTC)


def _within_range(value: datetime) -> datetime:
    """``value`` if it lies in [:data:`EARLIEST_TIME`, :data:`LATEST_TIME`) (naive = UTC), else a ValueError (a 422).

    >>> from datetime import timedelta, timezone
    >>> _within_range(datetime(2026, 11, 30)).year
    2026
    >>> _within_range(datetime(1, 1, 1, 20, tzinfo=timezone(timedelta(hours=-14))))
    Traceback (most recent call last):
    ValueError: times must lie between 0002-01-01 and 9998-01-01 (UTC)
    """
    if not EARLIEST_TIME <= (value if value.tzinfo else value.replace(tzinfo=UTC)) < LATEST_TIME:
        raise ValueError("times must lie between 0002-01-01 and 9998-01-01 (UTC)")
    return value


RequestTime = Annotated[datetime, AfterValidator(_within_range)]
"""A time given in a request (``since``, ``until``, …): RFC 3339, within the range above."""


@lru_cache(maxsize=16)
def get_catalog(data_dir: str) -> Catalog:
    """The views over one data folder, made on first use (not at import) and shared by every request; its database
    reads no file outside the folder (:mod:`api.sandbox`)."""
    catalog = Catalog(data_dir)
    restrict_files(catalog)
    return catalog


def get_duckdb(settings: SettingsDep) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor of the catalog for one request, inside a read-only transaction: nothing a request runs can write
    to the database (its views included); files outside the data folder are out of reach (:mod:`api.sandbox`)."""
    cursor = get_catalog(str(settings.data_dir)).cursor()
    try:
        cursor.execute(READ_ONLY)
        yield cursor
    finally:
        cursor.close()  # the transaction ends with it (nothing to commit)


DuckDB = Annotated[duckdb.DuckDBPyConnection, Depends(get_duckdb)]


@lru_cache(maxsize=8)
def _read_config(path: str, stamp: tuple[int, int]) -> Mapping[str, Any]:
    """The parsed config, read again when the file changes (``stamp``: its modification time and size)."""
    with open(path, encoding="utf-8") as fh:
        config = tomllib.loads(fh.read())
    check_analysis(config)
    parse_judges(config)
    return config


def get_eval_config(settings: SettingsDep) -> Mapping[str, Any]:
    """The evaluation config's contents (empty without ``EVALSTREAM_EVAL_CONFIG``); a file that cannot be read
    or holds an invalid analysis key is a 500 naming the problem, never silently ignored."""
    if settings.eval_config is None:
        return {}
    path = str(settings.eval_config)
    try:
        stat = settings.eval_config.stat()
        return _read_config(path, (stat.st_mtime_ns, stat.st_size))
    except (OSError, tomllib.TOMLDecodeError, AnalysisConfigError, JudgeConfigError) as exc:
        raise HTTPException(status_code=500, detail=f"evaluation config {path}: {exc}") from None


EvalConfig = Annotated[Mapping[str, Any], Depends(get_eval_config)]
