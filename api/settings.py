"""The API's settings (environment prefix ``EVALSTREAM_``, as the worker's): where to read, where to listen.

The API reads only what the sinks wrote, so it needs the data folder and nothing of the worker's; and who may ask
(API keys, :mod:`api.auth`).

Example::

    >>> ApiSettings(data_dir="/srv/evalstream").data_dir.as_posix()
    '/srv/evalstream'
    >>> ApiSettings(data_dir="s3://bucket/evalstream/").data_dir
    's3://bucket/evalstream'
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sinks.store import DataRoot


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVALSTREAM_", env_file=".env", extra="ignore")

    data_dir: DataRoot = Field(
        default=Path("evalstream-data"),
        description="Where the worker's sinks write Parquet: a folder or `s3://bucket/prefix` (AWS_* settings).",
    )
    eval_config: Path | None = Field(
        default=None, description="The evaluation config: the API reads its primary metrics and drift thresholds."
    )
    api_host: str = Field(default="127.0.0.1", description="Bind address of `evalstream api`.")
    api_port: int = Field(default=8000, ge=0, le=65535, description="Port of `evalstream api`.")
    clusters_cache_s: float = Field(
        default=60.0, ge=0, le=86400, description="How long `/v1/clusters` keeps an answer for the same request."
    )
    api_keys: str | None = Field(
        default=None,
        description="API keys, comma-separated: every endpoint but /health, / and /static/* then needs "
        "`Authorization: Bearer <key>` (api/auth.py).",
    )
    api_keys_file: Path | None = Field(
        default=None, description="A file of API keys, one a line (`#` starts a comment); read at start-up."
    )
    api_allow_unauthenticated: bool = Field(
        default=False, description="Let `evalstream api` listen on a non-loopback address without API keys."
    )
    log_level: str = "info"


@lru_cache
def get_settings() -> ApiSettings:
    """The API's settings, read once from the environment (clear with ``get_settings.cache_clear()``)."""
    return ApiSettings()
