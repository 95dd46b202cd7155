"""The worker's runs of ``bench/floor.py``: a drain measured from its Parquet files, and the latency run.

:func:`run_worker` starts ``evalstream worker`` (optionally under cProfile) on a topic published beforehand and
returns the moment each of its Parquet files appeared with the offsets the file covers (cases (c) and (d)).

:func:`latency` starts a worker (embeddings off) on a topic of its own, sends it a warm-up (its first batch:
start-up, group join, first rebalance) and waits until the reader sees it; then a thread publishes the
messages with :class:`streams.sdk.publisher.Publisher` at a fixed rate (each event's ``ts`` set to the moment it
is sent, a malformed message sent as it is) while the main thread polls: when the events folder has a file it
had not, it asks the ``events`` view of :func:`sinks.catalog.connect` for the rows past the offsets it has read,
and takes the time each event id first came back.

Usage (``bench/floor.py`` runs them; they need a broker)::

    batches, counters = run_worker("127.0.0.1:9092", "topic", 20_000, "off", Path("/tmp/x"), "group")
    result = latency("127.0.0.1:9092", messages, rate=3000, seconds=45, poll_s=0.15, work=Path("/tmp/x"), tag="t")
    result["p50"], result["p99"]  # seconds from publish to queryable
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Message = dict[str, Any] | tuple[bytes | None, bytes | None]  # a valid event, or a malformed (key, value)
Batches = list[tuple[float, int, list[int]]]  # (when done, messages, partitions)


def counters_at_shutdown(log_path: Path) -> str:
    """The worker's last counters line (``evalstream counters at shutdown: {...}``), or ""."""
    log = log_path.read_text(errors="replace")
    return log.split("counters at shutdown: ")[-1].splitlines()[0] if "counters at shutdown: " in log else ""


def worker_settings(bootstrap: str, topic: str, tag: str, data_dir: Path, embed: str, flush: int | None = None) -> Any:
    """A worker's settings: consumer group ``tag``, its own metrics and alerts topics, the default batch size
    unless ``flush`` says otherwise."""
    from streams.settings import Settings

    options: dict[str, Any] = {"embed_backend": embed, **({"flush_max_events": flush} if flush else {})}
    return Settings(
        bootstrap_servers=bootstrap, events_topic=topic, worker_id=tag, data_dir=data_dir,
        metrics_topic=f"{tag}.metrics", alerts_topic=f"{tag}.alerts", **options,
    )  # fmt: skip


def run_worker(
    bootstrap: str, topic: str, expect: int, embed: str, work: Path, tag: str, flush: int | None = None,
    profile: Path | None = None,
) -> tuple[Batches, str]:  # fmt: skip
    """Case (c) or (d): ``evalstream worker`` drains ``topic``; its batches from the Parquet files it wrote (the
    offsets each file's name covers, events and dead letters: every message lands in one of them)."""
    from sinks.parquet import parse_file_name
    from streams.local.launch import stop, wait_for

    settings = worker_settings(bootstrap, topic, tag, work / tag / "data", embed, flush)
    log_path = work / tag / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    with open(log_path, "ab") as fh:
        worker = subprocess.Popen(
            [sys.executable, *profiler, "-m", "streams.cli", "worker"],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **settings.to_env()},
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    spans: dict[tuple[int, int, int], float] = {}

    def landed() -> int:
        for dataset in ("events", "dlq"):
            for path in (settings.data_dir / dataset).glob("dt=*/*.parquet"):
                span = parse_file_name(path.name)
                assert span is not None, path
                key = (span.partition, span.first_offset, span.last_offset)
                spans[key] = max(spans.get(key, 0.0), path.stat().st_mtime)
        return sum(last - first + 1 for _, first, last in spans)

    try:
        wait_for(lambda: landed() >= expect or None, 1800, 0.25, "the worker", alive=worker)
    except Exception:
        print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        stop(worker, 120 if profile else 30)
    counters = counters_at_shutdown(log_path)
    return [(t, last - first + 1, [p]) for (p, first, last), t in sorted(spans.items(), key=lambda kv: kv[1])], counters


def latency(
    bootstrap: str, messages: list[Message], rate: float, seconds: float, poll_s: float, work: Path, tag: str
) -> dict[str, Any]:
    """Publish ``messages`` at ``rate`` per second (each ``ts`` set when sent) while a worker (embeddings off)
    runs; the time from each event's publish to its first appearance in the ``events`` view."""
    import duckdb

    from sinks.catalog import connect
    from streams.local.launch import spawn_cli, stop
    from streams.sdk.publisher import Publisher
    from streams.topics import ensure_topics

    settings = worker_settings(bootstrap, f"{tag}.events", tag, work / tag / "data", "off")
    ensure_topics(settings)
    worker = spawn_cli(["worker"], settings.to_env(), work / tag / "worker.log")
    n = min(len(messages), int(rate * seconds))
    warm, paced = [m for m in messages[n : n + 100] if isinstance(m, dict)], messages[:n]
    sent: dict[str, float] = {}  # event id -> publish time (its ts)
    seen: dict[str, float] = {}  # event id -> when the reader first had it
    watermark: dict[int, int] = {}  # partition -> last offset read
    pub = Publisher(bootstrap, settings.events_topic)
    con: duckdb.DuckDBPyConnection | None = None
    listed: set[str] = set()  # the events files there were at the last query
    published = threading.Event()
    elapsed = 0.0
    queries: list[float] = []  # seconds each reader query took
    polls = 0

    def stamped(event: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        sent[event["event_id"]] = now.timestamp()
        return {**event, "ts": now.isoformat().replace("+00:00", "Z")}

    def poll() -> None:
        nonlocal con, listed
        # Query only when the events folder has a file it had not (listing it costs ~1 ms; a query over all the
        # files, ~50-100 ms of the 2 cores the worker needs too); the query is what says the rows are readable.
        files = {p.name for p in (settings.data_dir / "events").glob("dt=*/*.parquet")}
        if files <= listed:
            return
        if con is None:  # a view over a dataset without files is an empty table: connect once there are some
            con = connect(settings.data_dir)
        started = time.perf_counter()
        newer = "".join(f" OR (_partition = {p} AND _offset > {o})" for p, o in watermark.items())
        known = ", ".join(str(p) for p in watermark) or "-1"
        try:
            rows = con.execute(
                f"SELECT _partition, _offset, event_id FROM events WHERE _partition NOT IN ({known}){newer}"
            ).fetchall()
        except duckdb.IOException:  # a file replaced between listing and reading (a replay): next poll
            return
        at = time.time()
        queries.append(time.perf_counter() - started)
        listed = files
        for part, offset, event_id in rows:
            watermark[part] = max(watermark.get(part, -1), offset)
            seen.setdefault(event_id, at)

    def paced_publisher() -> None:
        nonlocal elapsed
        t0 = time.perf_counter()
        i = 0
        while i < len(paced):
            due = min(len(paced), int((time.perf_counter() - t0) * rate) + 1)
            for m in paced[i:due]:
                pub.publish(stamped(m)) if isinstance(m, dict) else pub.publish_raw(m[1], m[0])
            i = due
            time.sleep(0.005)
        pub.flush()
        elapsed = time.perf_counter() - t0
        published.set()

    def wait(until: float) -> None:
        nonlocal polls
        while time.time() < until:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {work / tag / 'worker.log'}")
            started = time.perf_counter()
            poll()
            polls += 1
            if published.is_set() and len(seen) >= len(sent):
                return
            time.sleep(max(0.0, poll_s - (time.perf_counter() - started)))

    try:
        for m in warm:  # the worker's first batch: its start-up, the group join and the first rebalance
            pub.publish(stamped({**m, "event_id": f"w-{m['event_id']}"}))
        pub.flush()
        published.set()
        wait(time.time() + 300)
        if len(seen) < len(warm):
            raise TimeoutError("the warm-up events never became visible")
        sent.clear()
        seen.clear()
        queries.clear()
        polls = 0
        published.clear()
        thread = threading.Thread(target=paced_publisher, daemon=True)
        thread.start()
        wait(time.time() + seconds * 10 + 120)  # what is still missing then counts as never seen
        thread.join()
    finally:
        pub.close()
        stop(worker)
    waits = sorted(seen[e] - t for e, t in sent.items() if e in seen)
    middle = min(sent.values()) + elapsed / 2
    late = sorted(seen[e] - t for e, t in sent.items() if e in seen and t >= middle)  # the second half alone
    q, q2 = (statistics.quantiles(w, n=100, method="inclusive") for w in (waits, late))
    return {
        "published": len(paced), "valid": len(sent), "missing": len(sent) - len(waits), "seconds": elapsed,
        "rate": len(paced) / elapsed, "p50": q[49], "p99": q[98], "max": waits[-1], "p50_late": q2[49],
        "p99_late": q2[98], "polls": polls, "queries": len(queries),
        "query_mean": statistics.mean(queries), "query_max": max(queries),
        "counters": counters_at_shutdown(work / tag / "worker.log"),
    }  # fmt: skip
