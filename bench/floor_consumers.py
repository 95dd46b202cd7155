"""The floors of ``bench/floor.py``, each run in a child process of its own: (a) a bare aiokafka consumer that
only decodes JSON, (b) a Faust agent that only acks.

Each drains ``TOPIC`` from its start with consumer group ``GROUP`` until it has had ``EXPECT`` messages, then
writes its batches to ``OUT`` as JSON, ``[[when done (Unix time), messages, [partitions]], ...]`` (the Faust
worker then waits for the caller's SIGTERM).

    python bench/floor_consumers.py bare|faust BOOTSTRAP TOPIC GROUP EXPECT OUT WORKDIR
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _write(out: Path, batches: list[tuple[float, int, list[int]]]) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(batches))
    tmp.rename(out)  # the caller polls for OUT: it must appear whole


async def bare(bootstrap: str, topic: str, group: str, expect: int, out: Path) -> None:
    """(a): aiokafka with its defaults, ``getmany`` of at most 500 of what was fetched (a grain fine enough to
    tell when every partition has been read once), ``json.loads`` of every value."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    batches: list[tuple[float, int, list[int]]] = []
    seen = bad = 0
    try:
        while seen < expect:
            got = await consumer.getmany(timeout_ms=1000, max_records=500)
            n = 0
            for records in got.values():
                for record in records:
                    try:
                        json.loads(record.value)  # type: ignore[arg-type]
                    except (TypeError, ValueError):  # the malformed ones: not JSON, not UTF-8, a tombstone
                        bad += 1
                n += len(records)
            if n:
                seen += n
                batches.append((time.time(), n, sorted(tp.partition for tp, r in got.items() if r)))
    finally:
        await consumer.stop()
    print(f"bare: {seen} messages, {bad} not JSON", flush=True)
    _write(out, batches)


def faust_floor(bootstrap: str, topic: str, group: str, expect: int, out: Path, work: Path) -> None:
    """(b): the worker app's Faust settings (streams/worker/app.py) and batching helper; each batch only acked."""
    import faust
    from confluent_kafka.admin import AdminClient
    from faust.worker import Worker

    from streams.faust_ext import patches
    from streams.faust_ext.batching import ack_events, take_events_overlapped
    from streams.settings import Settings

    settings = Settings(bootstrap_servers=bootstrap)
    work.mkdir(parents=True, exist_ok=True)
    partitions = len(
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30).topics[topic].partitions
    )
    app = faust.App(
        group,
        broker=";".join(f"kafka://{s.strip()}" for s in bootstrap.split(",") if s.strip()),
        store="memory://",
        datadir=str(work / "_faust"),
        topic_partitions=partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=settings.producer_max_batch_bytes,
    )
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    batches: list[tuple[float, int, list[int]]] = []

    @app.agent(source, name="floor")  # type: ignore[untyped-decorator]
    async def floor(stream: Any) -> None:
        patches.keep_stream_queue_on_resume(app, stream)
        seen = 0
        async for batch in take_events_overlapped(stream, settings.flush_max_events, settings.flush_interval_s, False):
            await ack_events(stream, batch)
            seen += len(batch)
            batches.append((time.time(), len(batch), sorted({ev.message.partition for ev in batch})))
            if seen >= expect and not out.exists():
                print(f"faust: {seen} messages", flush=True)
                _write(out, batches)

    gc.collect()
    gc.freeze()  # as the worker does (streams/worker/app.py run_worker)
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def main() -> int:
    kind, bootstrap, topic, group, expect, out, work = sys.argv[1:8]
    if kind == "bare":
        asyncio.run(bare(bootstrap, topic, group, int(expect), Path(out)))
    else:
        faust_floor(bootstrap, topic, group, int(expect), Path(out), Path(work))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
