"""Benchmark: the API's timeseries, compare and drift answers on many small files, after compaction, and against
the same aggregates written by hand in DuckDB over one file.

Generates ``--scores`` score rows (default 10 million) for ``--generations`` generations (1 million) and
``--embeddings`` stored embeddings (1 million), over 7 days, laid out as the sink writes them: one file per
partition (6) per batch (``--batch`` events, 5,000 by default: ~18,000 score rows per batch), per date folder.
Then, in one run, for each query (median of ``--repeats``):

(a) the API on the small files; (b) the API after ``sinks.compaction.compact``; (c) the same computation over one
Parquet file per dataset holding all its rows, without the API around it: the routers' functions called directly
on a DuckDB connection whose views read those files (no file listing, no hiding of compacted inputs, no HTTP):
the floor that storage and serving are measured against.

Targets: (b) / (c) <= 1.5 for timeseries and compare; a drift answer on two windows of 50,000 embeddings in
under 2 s on the 2-core machine.

    python bench/queries.py [--scores 10000000] [--generations 1000000] [--embeddings 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_seconds
from sinks.parquet import file_name
from sinks.schemas import EMBEDDINGS_SCHEMA, EVENTS_SCHEMA, SCORES_SCHEMA

TOPIC = "llm.events"
START = datetime(2026, 11, 20)
DAYS = 7
PARTITIONS = 6
METRICS = ["thumbs_up", "regenerated", "edit_ratio", "latency_ms", "quality", "novelty", "pii_output", "cost_usd"]
MODELS = ["model-a", "model-b", "model-c"]


def _strings(prefix: str, ids: np.ndarray) -> pa.Array:
    return pa.array(np.char.add(prefix, ids.astype(str)))


def generate(root: Path, scores: int, generations: int, embeddings: int, batch: int) -> dict[str, int]:
    """Write the three datasets as the sink lays them out; returns the number of files per dataset."""
    rng = np.random.default_rng(0)
    span_s = DAYS * 86400
    gen_ts = np.sort(rng.uniform(0, span_s, generations))  # generation i at gen_ts[i]
    gen_model = rng.integers(0, 3, generations)
    gen_app = rng.integers(0, 2, generations)
    files = {"events": 0, "scores": 0, "embeddings": 0}
    # scores: each belongs to a random generation, a little after it
    s_gen = np.sort(rng.integers(0, generations, scores))
    s_ts = gen_ts[s_gen] + rng.uniform(0, 60, scores)
    s_metric = rng.integers(0, len(METRICS), scores)
    values = rng.lognormal(6.5, 0.6, scores)
    binary = np.isin(s_metric, [0, 1])
    values[binary] = (rng.random(binary.sum()) < 0.5 + 0.05 * gen_model[s_gen[binary]]).astype(float)
    ratio = np.isin(s_metric, [2, 4, 5])
    values[ratio] = rng.beta(2, 5, ratio.sum())
    e_idx = np.sort(rng.choice(generations, min(embeddings, generations), replace=False))
    vectors = rng.integers(-127, 128, (len(e_idx), 384), dtype=np.int8)

    def ts_array(seconds: np.ndarray) -> pa.Array:
        return pa.array((np.datetime64(START, "us") + (seconds * 1e6).astype("timedelta64[us]")), pa.timestamp("us"))

    def labels(g: np.ndarray) -> dict[str, pa.Array]:
        return {
            "app": pa.array(np.array(["chat", "docs"])[gen_app[g]]), "route": pa.array(np.full(len(g), "answer")),
            "model": pa.array(np.array(MODELS)[gen_model[g]]), "prompt_version": pa.array(np.full(len(g), "v1")),
        }  # fmt: skip

    def write(
        dataset: str, schema: pa.Schema, columns: dict[str, pa.Array], seconds: np.ndarray, p: int, o: int
    ) -> None:
        table = pa.table(
            {name: columns.get(name, pa.nulls(len(seconds), schema.field(name).type)) for name in schema.names}
        )
        days = (seconds // 86400).astype(int)
        for day in np.unique(days):
            folder = root / dataset / f"dt={(START + timedelta(days=int(day))).date().isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            rows = np.flatnonzero(days == day)
            pq.write_table(table.take(rows), folder / file_name(TOPIC, p, o, o + batch - 1), compression="zstd")
            files[dataset] += 1

    # batches of `batch` generations (events), each split over the partitions by generation id
    for b, start in enumerate(range(0, generations, batch)):
        g = np.arange(start, min(start + batch, generations))
        s_rows = np.arange(np.searchsorted(s_gen, start), np.searchsorted(s_gen, g[-1] + 1))
        e_rows = np.arange(np.searchsorted(e_idx, start), np.searchsorted(e_idx, g[-1] + 1))
        for p in range(PARTITIONS):
            offset = b * batch
            gp = g[g % PARTITIONS == p]
            write("events", EVENTS_SCHEMA, {
                "event_id": _strings("e", gp), "type": pa.array(np.full(len(gp), "generation")),
                "ts": ts_array(gen_ts[gp]), "generation_id": _strings("g", gp), **labels(gp),
                "latency_ms": pa.array(rng.lognormal(6.5, 0.6, len(gp))),
            }, gen_ts[gp], p, offset)  # fmt: skip
            sp = s_rows[s_gen[s_rows] % PARTITIONS == p]
            write("scores", SCORES_SCHEMA, {
                "event_id": _strings("s", sp), "generation_id": _strings("g", s_gen[sp]), "ts": ts_array(s_ts[sp]),
                **labels(s_gen[sp]), "metric": pa.array(np.array(METRICS)[s_metric[sp]]), "value": pa.array(values[sp]),
            }, s_ts[sp], p, offset)  # fmt: skip
            ep = e_rows[e_idx[e_rows] % PARTITIONS == p]
            if len(ep):
                flat = pa.array(vectors[ep].reshape(-1))
                write("embeddings", EMBEDDINGS_SCHEMA, {
                    "event_id": _strings("e", e_idx[ep]), "generation_id": _strings("g", e_idx[ep]),
                    "ts": ts_array(gen_ts[e_idx[ep]]), **labels(e_idx[ep]),
                    "output_embedding": pa.FixedSizeListArray.from_arrays(flat, 384),
                }, gen_ts[e_idx[ep]], p, offset)  # fmt: skip
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", type=int, default=10_000_000)
    parser.add_argument("--generations", type=int, default=1_000_000)
    parser.add_argument("--embeddings", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="events per worker batch (one file per partition)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings, get_settings
    from sinks.compaction import compact
    from sinks.parquet import COMPACTED_INPUTS_KEPT_S, COMPACTED_VISIBLE_AFTER_S

    root = Path(tempfile.mkdtemp(prefix="evalstream-bench-queries-"))
    started = time.perf_counter()
    files = generate(root, args.scores, args.generations, args.embeddings, args.batch)
    print(f"data: {args.scores:,} scores, {args.generations:,} generations, {args.embeddings:,} embeddings over "
          f"{DAYS} days in {files} small files ({time.perf_counter() - started:.0f} s to write); {root}")  # fmt: skip
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=root)
    client = TestClient(app)
    day = lambda d: (START + timedelta(days=d)).isoformat() + "Z"  # noqa: E731
    # two windows of ~50,000 embeddings each (1 million over 7 days: ~143,000 a day)
    per_s = args.embeddings / (DAYS * 86400)
    width = timedelta(seconds=50_000 / per_s)
    requests = {
        "timeseries": ("/v1/metrics/timeseries", {"metric": "latency_ms", "window": "1h", "group_by": "model"}),
        "compare": (
            "/v1/compare",
            {"dimension": "model", "a": "model-a", "b": "model-b", "metrics": "thumbs_up,latency_ms,edit_ratio"},
        ),
        "drift": (
            "/v1/drift",
            {
                "signal": "output_embedding",
                "reference_since": day(1),
                "reference_until": (START + timedelta(days=1) + width).isoformat() + "Z",
                "current_since": day(5),
                "current_until": (START + timedelta(days=5) + width).isoformat() + "Z",
            },
        ),
    }

    def api(name: str) -> Callable[[], object]:
        url, params = requests[name]

        def call() -> object:
            response = client.get(url, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        return call

    small = {name: median_seconds(api(name), args.repeats, warm=True) for name in requests}
    n_ref = api("drift")()["data"][0]["n_reference"]  # type: ignore[index]
    started = time.perf_counter()
    safe = {(TOPIC, p): 10**12 for p in range(PARTITIONS)}
    settled = time.time() - 3600  # as compacted an hour ago, its inputs deleted by the next run (sinks.compaction)
    report = compact(root, safe, min_age_s=0, now=settled)
    compact(root, safe, min_age_s=0, now=settled + COMPACTED_VISIBLE_AFTER_S + COMPACTED_INPUTS_KEPT_S + 600)
    print(f"compaction: {report.files_in:,} files into {report.merged:,} in {time.perf_counter() - started:.0f} s")
    compacted = {name: median_seconds(api(name), args.repeats, warm=True) for name in requests}

    one = root / "one-file"
    one.mkdir()
    hand = duckdb.connect()
    for dataset in ("events", "scores", "embeddings"):
        source = f"read_parquet('{root}/{dataset}/dt=*/*.parquet', hive_partitioning = true)"
        hand.execute(f"COPY (SELECT * FROM {source}) TO '{one}/{dataset}.parquet' (FORMAT parquet, COMPRESSION zstd)")
        hand.execute(f"CREATE VIEW {dataset} AS SELECT * FROM read_parquet('{one}/{dataset}.parquet')")
    from sinks.catalog import GENERATIONS_VIEW, MACROS

    hand.execute(MACROS)
    hand.execute(GENERATIONS_VIEW)
    from api.routers.compare import get_compare
    from api.routers.drift import get_drift
    from api.routers.metrics import get_timeseries

    def direct(name: str) -> Callable[[], object]:
        _, params = requests[name]
        endpoint: Callable[..., object] = {"timeseries": get_timeseries, "compare": get_compare, "drift": get_drift}[
            name
        ]
        parsed = {k: (datetime.fromisoformat(v.removesuffix("Z")) if k.endswith(("since", "until")) else v)
                  for k, v in params.items()}  # fmt: skip

        def call() -> object:
            cursor = hand.cursor()
            try:
                return endpoint(db=cursor, **parsed, **({} if name == "timeseries" else {"config": {}}))
            finally:
                cursor.close()

        return call

    hand_times = {name: median_seconds(direct(name), args.repeats, warm=True) for name in requests}
    print(
        "\n| query | (a) small files | (b) after compaction | (c) one file per dataset, no API | (b) / (c) | target |"
    )
    print("|---|---|---|---|---|---|")
    for name in requests:
        c = hand_times[name]
        target = "(b) / (c) ≤ 1.5" if name != "drift" else "< 2 s (two windows of ~50,000)"
        row = f"| {name} | {small[name]:.3f} s | {compacted[name]:.3f} s | {c:.3f} s | {compacted[name] / c:.2f} |"
        print(f"{row} {target} |")
    print(f"\n(drift windows: {n_ref:,} reference embeddings; median of {args.repeats} after one warm call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
