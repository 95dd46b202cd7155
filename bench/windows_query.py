"""Benchmark: a timeseries over a long range from the raw scores, against the same answer from the live windows.

Generates ``--scores`` score rows of one metric (default 5 million) over ``--days`` days (7) for 6 groups (3 routes
x 2 models), and the ``windows`` rows the evaluator would write for them (one per minute, group and metric, with
its KLL sketch). Then, per range (1 day, the whole span), the hourly timeseries per route, median of
``--repeats``:

(a) raw: ``count``, ``avg``, ``quantile_cont`` 0.5 and 0.95 in DuckDB over the scores (what ``/v1/metrics/
timeseries`` runs);
(b) windows, counts and means only: ``sum(count)``, ``sum(sum) / sum(count)`` in DuckDB over the windows;
(c) windows with quantiles: (b) plus p50/p95 from the minute sketches merged in Python (``metrics.windows``).

The answer says which is faster and by how much (ratio raw / windows); ``docs/alerts.md`` says what the API does
with it.

    python bench/windows_query.py [--scores 5000000] [--days 7] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.quantiles import QuantileSketch
from metrics.windows import WindowAggregate
from sinks.alerting import WINDOWS_SCHEMA, window_row

T0 = datetime(2026, 11, 1)
ROUTES, MODELS = ("answer", "search", "summarize"), ("m1", "m2")


def generate(n: int, days: int, folder: Path) -> tuple[Path, Path]:
    """Raw scores (one file per day) and their minute windows (one file per day)."""
    rng = np.random.default_rng(0)
    span = days * 86_400
    seconds = np.sort(rng.integers(0, span, n))
    values = rng.lognormal(6, 0.5, n)
    groups = rng.integers(0, 6, n)
    raw, windows = folder / "scores", folder / "windows"
    raw.mkdir()
    windows.mkdir()
    per_day = np.searchsorted(seconds, np.arange(0, span + 1, 86_400))
    for day in range(days):
        lo, hi = per_day[day], per_day[day + 1]
        ts = np.datetime64(T0) + seconds[lo:hi].astype("timedelta64[s]")
        g = groups[lo:hi]
        pq.write_table(pa.table({
            "ts": pa.array(ts.astype("datetime64[us]")), "route": pa.array([ROUTES[x % 3] for x in g]),
            "model": pa.array([MODELS[x // 3] for x in g]), "metric": pa.array(["latency_ms"] * (hi - lo)),
            "value": pa.array(values[lo:hi]),
        }), raw / f"day-{day}.parquet")  # fmt: skip
        minute = seconds[lo:hi] // 60
        buckets: dict[tuple[int, int], list[float]] = defaultdict(list)
        for m, gg, v in zip(minute.tolist(), g.tolist(), values[lo:hi].tolist(), strict=True):
            buckets[(m, gg)].append(v)
        rows = []
        for (m, gg), vs in sorted(buckets.items()):
            labels = {"app": "shop", "route": ROUTES[gg % 3], "model": MODELS[gg // 3]}
            start = int(T0.timestamp()) + m * 60
            rows.append(window_row(start, 60, labels, "latency_ms", WindowAggregate().update_many(vs), 1))
        pq.write_table(pa.Table.from_pylist(rows, schema=WINDOWS_SCHEMA), windows / f"day-{day}.parquet")
    return raw, windows


RAW_SQL = """
SELECT time_bucket(INTERVAL 1 hour, ts) AS b, route, count(*) AS n, avg(value) AS mean,
       quantile_cont(value, 0.5) AS p50, quantile_cont(value, 0.95) AS p95
FROM read_parquet($files) WHERE metric = 'latency_ms' AND ts >= $since AND ts < $until GROUP BY ALL
"""
WINDOWS_SQL = """
SELECT time_bucket(INTERVAL 1 hour, window_start) AS b, route, sum(count) AS n, sum(sum) / sum(count) AS mean
FROM read_parquet($files) WHERE metric = 'latency_ms' AND window_start >= $since AND window_start < $until
GROUP BY ALL
"""
SKETCH_SQL = """
SELECT time_bucket(INTERVAL 1 hour, window_start) AS b, route, count, sketch
FROM read_parquet($files) WHERE metric = 'latency_ms' AND window_start >= $since AND window_start < $until
"""


def windows_with_quantiles(con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    merged: dict[tuple[Any, str], QuantileSketch] = {}
    for b, route, _, sketch in con.execute(SKETCH_SQL, params).fetchall():
        key = (b, route)
        s = QuantileSketch.from_text(sketch)
        merged[key] = merged[key].merge(s) if key in merged else s
    means = {(b, r): (n, mean) for b, r, n, mean in con.execute(WINDOWS_SQL, params).fetchall()}
    return [(*key, *means[key], s.get(0.5), s.get(0.95)) for key, s in merged.items()]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="evalstream-bench-windows-"))
    started = time.perf_counter()
    raw, windows = generate(args.scores, args.days, folder)
    con = duckdb.connect()
    n_windows = con.execute("SELECT count(*) FROM read_parquet($f)", {"f": str(windows / "*.parquet")}).fetchone()
    print(f"{args.scores:,} scores over {args.days} days, {n_windows[0] if n_windows else 0:,} window rows; "
          f"generated in {time.perf_counter() - started:.0f} s")  # fmt: skip
    print("\n| range | raw (a) s | windows, counts and means (b) s | windows with p50/p95 (c) s | a / b | a / c |")
    print("|---|---|---|---|---|---|")
    for label, days in (("1 day", 1), (f"{args.days} days", args.days)):
        params = {"since": T0, "until": T0 + timedelta(days=days)}
        a, raw_rows = timed(lambda p=params: con.execute(RAW_SQL, {**p, "files": str(raw / "*.parquet")}).fetchall(),
                            args.repeats)  # fmt: skip
        b, _ = timed(lambda p=params: con.execute(WINDOWS_SQL, {**p, "files": str(windows / "*.parquet")}).fetchall(),
                     args.repeats)  # fmt: skip
        c, win_rows = timed(lambda p=params: windows_with_quantiles(con, {**p, "files": str(windows / "*.parquet")}),
                            args.repeats)  # fmt: skip
        exact = {(r[0], r[1]): r[2] for r in raw_rows} == {(r[0], r[1]): r[2] for r in win_rows}
        print(
            f"| {label} | {a:.3f} | {b:.3f} | {c:.3f} | {a / b:.1f} | {a / c:.2f} |"
            + ("" if exact else " counts differ!")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
