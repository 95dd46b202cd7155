"""The worker's settings, also read by the CLI and the local tooling (environment prefix ``EVALSTREAM_``).

The API has its own (:mod:`api.settings`): it shares only ``EVALSTREAM_DATA_DIR`` and ``EVALSTREAM_LOG_LEVEL``.

Example::

    >>> import os
    >>> os.environ["EVALSTREAM_EVENTS_TOPIC"] = "llm.events"
    >>> Settings().dlq_topic
    'llm.events.dlq'
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sinks.store import DataRoot, Store, open_store


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVALSTREAM_", env_file=".env", extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    events_topic: str = "llm.events"
    dlq_topic: str = Field(default="", description="Dead-letter topic; default: '<events_topic>.dlq'.")
    topic_partitions: int = Field(default=6, ge=1, description="Partitions when the worker creates topics.")
    worker_id: str = Field(default="evalstream-worker", description="Faust app id (= consumer group).")
    data_dir: DataRoot = Field(
        default=Path("evalstream-data"),
        description="Where the sinks write Parquet: a folder, or an object store `s3://bucket/prefix` (endpoint and "
        "credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).",
    )
    state_dir: Path | None = Field(
        default=None,
        description="Faust's own local files; default `<data_dir>/_faust`, or `evalstream-state` when the data "
        "folder is an object store.",
    )
    flush_max_events: int = Field(default=5000, ge=1, description="Flush a batch at this many events...")
    flush_interval_s: float = Field(default=2.0, gt=0, le=30, description="...or after this many seconds.")
    commit_interval_s: float = Field(
        default=2.8, gt=0, le=3600, description="How often offsets of durable batches are committed (Faust's default)."
    )
    join_ttl_s: float = Field(
        default=24 * 3600, gt=0, description="How long a generation stays joinable by edits/feedback."
    )
    dedup_horizon_s: float = Field(
        default=600,
        ge=0,
        description="A message whose event_id its partition processed this many seconds ago or less is a duplicate "
        "(dead-lettered, not scored again); 0 turns de-duplication off.",
    )
    store_text: Literal["full", "redacted", "none"] = Field(
        default="full", description="Texts in Parquet: as sent, with PII redacted, or not at all."
    )
    novelty_k: int = Field(default=32, ge=1, le=1024, description="Recent outputs novelty compares with.")
    novelty_level: Literal["word", "char"] = Field(
        default="word", description="Novelty's edit distance over words (cheap on long outputs) or characters."
    )
    refresh_window_s: float = Field(
        default=600, gt=0, description="Same input again in a session within this many seconds = a refresh."
    )
    eval_config: Path | None = Field(
        default=None, description="Per-app evaluation config (TOML): examples, banned topics, weights."
    )
    embed_backend: Literal["auto", "torch", "onnx", "onnx-int8", "off"] = Field(
        default="auto", description="Embedding backend: auto = CUDA fp16 if present, else ONNX int8 on CPU."
    )
    embed_batch_size: int | None = Field(
        default=None, ge=1, le=4096, description="Texts per model call; default 32 on CPU, 256 on CUDA."
    )
    embed_int8_min_tokens: int = Field(default=64, ge=0, description="onnx-int8: shorter texts stay fp32.")
    embed_threads: int = Field(default=0, ge=0, description="ONNX batches encoded at once (0 = one per core).")
    embed_max_tokens: int | None = Field(
        default=None, ge=3, le=512, description="Tokens embedded per text, the rest cut off; default the model's 256."
    )
    embed_process: bool = Field(
        default=True, description="Run the model in a child process (no GIL shared with the event loop)."
    )
    embed_server: Path | None = Field(
        default=None,
        description="Unix socket of a shared `evalstream encoder`: the worker uses it instead of its own model.",
    )
    embed_cache_size: int = Field(default=20_000, ge=0, description="LRU cache of embeddings, in texts.")
    embed_inputs: bool = Field(default=True, description="Also embed inputs (relevance, stored embedding).")
    model_cache_dir: Path | None = Field(
        default=None, description="Where ONNX exports go; default ~/.cache/evalstream/models."
    )
    producer_linger_s: float = Field(
        default=0.01, ge=0, le=1, description="The worker's writes to Kafka (changelogs, DLQ) wait this long to batch."
    )
    producer_max_batch_bytes: int = Field(
        default=256 * 1024, ge=1024, le=1024 * 1024, description="Largest batch of one such produce request."
    )
    otlp_host: str = Field(default="127.0.0.1", description="Bind address of `evalstream otlp`.")
    otlp_port: int = Field(default=4318, ge=0, le=65535, description="Port of `evalstream otlp` (OTLP/HTTP's).")
    otlp_max_body_bytes: int = Field(
        default=16 << 20, ge=1024, description="Largest OTLP request, after decompression (larger: 413)."
    )
    otlp_max_in_flight: int = Field(default=8, ge=1, le=1024, description="OTLP requests handled at once (more: 503).")
    otlp_delivery_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="How long a request waits for Kafka's acknowledgements (then 503)."
    )
    otlp_component_attribute: str = Field(
        default="evalstream.component", description="Span attribute naming the pipeline component."
    )
    otlp_route_attribute: str = Field(default="evalstream.route", description="Span attribute naming the route.")
    otlp_prompt_version_attribute: str = Field(
        default="evalstream.prompt_version", description="Span attribute naming the prompt version."
    )
    otlp_index_version_attribute: str = Field(
        default="evalstream.index_version", description="Span attribute naming the retrieval index version."
    )
    otlp_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description='USD per million input and output tokens per model, JSON: {"gpt-4o": [2.5, 10.0]}.',
    )
    judge_base_url: str | None = Field(
        default=None, description="OpenAI-compatible API of the judges, e.g. https://api.openai.com/v1 (off if unset)."
    )
    judge_api_key: str | None = Field(default=None, description="Bearer key for the judges' API.")
    judge_model: str = Field(default="gpt-4o-mini", description="Model of a judge that names none.")
    judge_timeout_s: float = Field(default=30.0, gt=0, le=600, description="One judge request's time limit.")
    judge_retries: int = Field(default=4, ge=0, le=20, description="Retries of a judge request (429, 5xx, timeouts).")
    judge_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="USD per million input and output tokens per judge model, JSON."
    )
    judge_cache: Path | None = Field(
        default=None, description="The judges' answer cache (SQLite); default ~/.cache/evalstream/judge-cache.sqlite."
    )
    window_s: int = Field(default=60, ge=1, le=86400, description="Live windows' width (event time, seconds).")
    window_grace_s: float = Field(
        default=120, ge=0, le=86400, description="A live window closes this long (event time) after its end."
    )
    window_idle_s: float = Field(
        default=15, gt=0, le=3600, description="A partition this long without scores follows the others' clock."
    )
    windows: bool = Field(default=True, description="Aggregate the scores in live windows (and emit them).")
    metrics_topic: str = Field(default="llm.metrics", description="Where closed live windows go (JSON).")
    alerts_topic: str = Field(default="llm.alerts", description="Where alert state changes go (JSON).")
    alert_rules: Path | None = Field(default=None, description="The alert rules file (TOML); none: no alerts.")
    alerts_in_worker: bool = Field(
        default=True, description="Run the alerting agent in the worker (false: run `evalstream alerts` apart)."
    )
    session_timeout_s: float = Field(
        default=60,
        ge=6,
        le=90,
        description="A worker that stops heartbeating (a crash) loses its partitions after this long: the failover "
        "time. Lower fails over sooner; too low and a busy worker is dropped from the group (a rebalance).",
    )
    stall_after_s: float = Field(
        default=120,
        gt=0,
        description="A partition with messages waiting and no durable batch for this long is logged as STALLED.",
    )
    worker_metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="Port of the worker's Prometheus /metrics (0 = off)."
    )
    worker_metrics_host: str = Field(default="127.0.0.1", description="Bind address of the worker's /metrics.")
    log_level: str = "info"

    @property
    def store(self) -> Store:
        """The data folder as a :class:`~sinks.store.Store` (one per root and process)."""
        return open_store(self.data_dir)

    @property
    def faust_dir(self) -> Path:
        """Where Faust keeps its own files (always local)."""
        if self.state_dir is not None:
            return self.state_dir
        return Path("evalstream-state") if isinstance(self.data_dir, str) else self.data_dir / "_faust"

    @model_validator(mode="after")
    def _default_dlq(self) -> Settings:
        if not self.dlq_topic:
            self.dlq_topic = f"{self.events_topic}.dlq"
        return self

    def encoder_options(self) -> dict[str, Any]:
        """The ``EVALSTREAM_EMBED_*`` model settings as :func:`streams.embedding.encoder.load_encoder`'s arguments."""
        return {
            "backend": self.embed_backend,
            "cache_dir": self.model_cache_dir,
            "batch_size": self.embed_batch_size,
            "int8_min_tokens": self.embed_int8_min_tokens,
            "threads": self.embed_threads,
            "max_tokens": self.embed_max_tokens,
        }

    def to_env(self) -> dict[str, str]:
        """These settings as ``EVALSTREAM_*`` environment variables (to configure a child process)."""
        return {
            f"EVALSTREAM_{name.upper()}": json.dumps(value) if isinstance(value, dict | list | tuple) else str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (clear with ``get_settings.cache_clear()``)."""
    return Settings()
