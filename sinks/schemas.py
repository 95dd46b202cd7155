"""Arrow schemas of the four datasets the sinks write (the worker builds the rows: ``streams.worker.rows``).

- ``events``: every valid event, one wide nullable row (the union of all event types' fields) plus
  ``extra`` (unknown fields, as JSON) and its Kafka coordinates ``_topic``/``_partition``/``_offset``.
- ``scores``: long format, one row per metric value, labelled with its generation's app, route, model, prompt
  and index versions (and, for span scores, the span's ``component``).
- ``embeddings``: one row per scored generation: its output (and input) embedding as ``int8[384]`` (the
  direction, scaled to ±127; compare with ``array_cosine_similarity(CAST(a AS FLOAT[384]), ...)`` in DuckDB)
  and the encoder that made it.
- ``dlq``: every rejected message with its reason and original bytes.

All timestamps are UTC, stored without a zone (``timestamp[us]``). Each dataset is Hive-partitioned by ``dt``
(the UTC date of ``ts``, or of ``received_at`` for the DLQ).

Example::

    >>> SCORES_SCHEMA.names  # doctest: +NORMALIZE_WHITESPACE
    ['event_id', 'generation_id', 'ts', 'app', 'route', 'model', 'prompt_version', 'metric', 'value',
     'index_version', 'component']
    >>> EMBEDDING.list_size
    384
"""

from __future__ import annotations

import pyarrow as pa

from metrics.similarity import EMBEDDING_DIM

TS = pa.timestamp("us")

EVENTS_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("type", pa.string()), ("ts", TS), ("session_id", pa.string()),
    ("app", pa.string()), ("generation_id", pa.string()), ("route", pa.string()), ("model", pa.string()),
    ("prompt_version", pa.string()), ("input", pa.string()), ("output", pa.string()),
    ("latency_ms", pa.float64()), ("tokens_in", pa.int64()), ("tokens_out", pa.int64()),
    ("cost_usd", pa.float64()), ("error", pa.string()), ("trace_id", pa.string()),
    ("thumbs", pa.string()), ("score", pa.float64()), ("comment", pa.string()),
    ("edited_output", pa.string()),
    ("span_id", pa.string()), ("parent_span_id", pa.string()), ("component", pa.string()),
    ("name", pa.string()), ("start", TS), ("end", TS), ("status", pa.string()),
    ("index_version", pa.string()), ("tags", pa.map_(pa.string(), pa.string())),
    ("context", pa.list_(pa.struct([("text", pa.string()), ("source", pa.string()), ("id", pa.string())]))),
    ("judge", pa.string()), ("judge_version", pa.string()), ("label", pa.string()), ("reason", pa.string()),
    ("raw_answer", pa.string()), ("parsed", pa.bool_()),
    ("extra", pa.string()),
    ("_topic", pa.string()), ("_partition", pa.int32()), ("_offset", pa.int64()),
])  # fmt: skip

SCORES_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("generation_id", pa.string()), ("ts", TS), ("app", pa.string()),
    ("route", pa.string()), ("model", pa.string()), ("prompt_version", pa.string()),
    ("metric", pa.string()), ("value", pa.float64()), ("index_version", pa.string()), ("component", pa.string()),
])  # fmt: skip

EMBEDDING = pa.list_(pa.int8(), EMBEDDING_DIM)  # direction only, see metrics.similarity.to_int8

EMBEDDINGS_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("generation_id", pa.string()), ("ts", TS), ("app", pa.string()),
    ("route", pa.string()), ("model", pa.string()), ("prompt_version", pa.string()), ("encoder", pa.string()),
    ("output_embedding", EMBEDDING), ("input_embedding", EMBEDDING), ("embedded_at", TS),
    ("index_version", pa.string()),
])  # fmt: skip

DLQ_SCHEMA = pa.schema([
    ("received_at", TS), ("reason", pa.string()), ("_topic", pa.string()), ("_partition", pa.int32()),
    ("_offset", pa.int64()), ("key", pa.binary()), ("value", pa.binary()),
])  # fmt: skip
