"""Benchmark: the data folder in an S3-compatible object store against a local folder, in the same run.

Starts moto's standalone S3 server (the dev extras) on this machine, then for a local folder and for a bucket:

1. **writes** the worker's pattern: ``--batches`` batches, each one file per partition (``--partitions``) of
   ``--rows`` score rows, through :class:`sinks.parquet.PartitionedParquetWriter` (locally: temporary file,
   fsync, rename; S3: one PUT per file); files per second;
2. **reads** on those files (median of ``--repeats``): a new connection with every view and a ``count(*)`` of
   ``scores`` (what ``evalstream sql`` pays), an aggregate on a long-lived :class:`sinks.catalog.Catalog` cursor
   (what an API request pays), and the same after ``sinks.compaction.compact``;
3. the catalog's ``cursor()`` alone (its check for datasets that gained or lost all files; 5 s apart on S3).

Prints each figure for both and the ratio S3 / local. moto is a stand-in: a real S3 adds network latency to each
request (tens of ms) and has no per-request Python cost of its own, so the ratios are indicative only.

    python bench/object_store.py [--partitions 6] [--batches 50] [--rows 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_seconds
from sinks.catalog import Catalog, connect
from sinks.compaction import compact
from sinks.parquet import COMPACTED_INPUTS_KEPT_S, COMPACTED_VISIBLE_AFTER_S, PartitionedParquetWriter
from sinks.schemas import SCORES_SCHEMA

TOPIC = "llm.events"
DAY = datetime(2026, 11, 30, 10)
AGGREGATE = "SELECT metric, count(*), avg(value) FROM scores GROUP BY metric ORDER BY metric"


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/reset", data=b"", timeout=1):
                return proc, endpoint
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto server did not start (pip install -e '.[dev]')")


def bucket_root(endpoint: str) -> str:
    from pyarrow import fs

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    admin, _ = fs.FileSystem.from_uri("s3://bench?allow_bucket_creation=true")
    admin.create_dir("bench")
    return "s3://bench/data"


def write(root: str, partitions: int, batches: int, rows: int) -> float:
    """Files per second written in the worker's pattern."""
    writer = PartitionedParquetWriter(root, "scores", SCORES_SCHEMA)
    metrics = ("thumbs_up", "edit_ratio", "novelty", "latency_ms")
    started = time.perf_counter()
    for b in range(batches):
        for p in range(partitions):
            first = b * rows
            batch = [{"event_id": f"{p}-{first + i}", "generation_id": f"g{p}-{first + i}",
                      "ts": DAY + timedelta(seconds=b), "app": "chat", "metric": metrics[i % 4],
                      "value": (i % 10) / 10} for i in range(rows)]  # fmt: skip
            writer.write(TOPIC, p, first, first + rows - 1, batch)
    return partitions * batches / (time.perf_counter() - started)


def reads(root: str, repeats: int) -> dict[str, float]:
    def fresh() -> None:
        con = connect(root)
        con.execute("SELECT count(*) FROM scores").fetchone()
        con.close()

    catalog = Catalog(root)
    return {
        "new connection + count(*)": median_seconds(fresh, repeats),
        "API cursor + aggregate": median_seconds(lambda: catalog.cursor().execute(AGGREGATE).fetchall(), repeats),
        "catalog.cursor() alone": median_seconds(catalog.cursor, repeats),
        "catalog.cursor(), datasets checked": median_seconds(Catalog(root, recheck_s=0).cursor, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    moto, endpoint = start_moto()
    try:
        roots = {"local": tempfile.mkdtemp(prefix="bench-store-"), "s3": bucket_root(endpoint)}
        figures: dict[str, dict[str, float]] = {}
        for name, root in roots.items():
            got = {"files written /s": write(root, args.partitions, args.batches, args.rows)}
            got |= {f"{k} (s)": v for k, v in reads(root, args.repeats).items()}
            safe = {(TOPIC, p): args.batches * args.rows for p in range(args.partitions)}
            started = time.perf_counter()
            settled = time.time() - 3600  # as compacted an hour ago, its inputs deleted by the next run
            report = compact(root, safe, min_age_s=0, now=settled)
            compact(root, safe, min_age_s=0, now=settled + COMPACTED_VISIBLE_AFTER_S + COMPACTED_INPUTS_KEPT_S + 600)
            got["compaction, both runs (s)"] = time.perf_counter() - started
            got |= {f"{k}, compacted (s)": v for k, v in reads(root, args.repeats).items() if "cursor()" not in k}
            figures[name] = got
            print(f"{name}: {report.files_in} files compacted into {report.merged}", file=sys.stderr)
        files = args.partitions * args.batches
        print(f"\n{files} files of {args.rows} score rows ({files * args.rows:,} rows); moto at {endpoint}; "
              f"medians of {args.repeats}\n")  # fmt: skip
        print("| figure | local folder | S3 (moto) | S3 / local |\n|---|---|---|---|")
        for key in figures["local"]:
            local, s3 = figures["local"][key], figures["s3"][key]
            fmt = "{:,.0f}" if key.endswith("/s") else "{:.4f}"
            print(f"| {key} | {fmt.format(local)} | {fmt.format(s3)} | {s3 / local:.1f} |")
    finally:
        moto.terminate()
        moto.wait(10)


if __name__ == "__main__":
    main()
