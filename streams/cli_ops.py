"""``evalstream status`` and ``evalstream replay``: operating the pipeline from a shell.

``status`` is one screen: the broker and the topics, the worker group's consumer lag per partition (committed
offsets against high watermarks), the workers' status files (:mod:`sinks.status`), the data folder's size and
the firing alerts. It exits 1 when the broker cannot be reached (after printing what the data folder says).

``replay`` backfills a JSON-lines file (``.gz``: gzip) at full speed through the idempotent producer of
:class:`streams.sdk.publisher.Publisher`, with a progress bar (rate, ETA, invalid lines so far). Each line is
validated as ``publish`` does, but an invalid line is skipped and counted instead of refusing the file; the first
20 are listed at the end with their line numbers. ``--raw`` sends the lines as they are. It exits 1 if any event
was not delivered.

Usage (both need a broker)::

    $ evalstream status
    $ evalstream replay events-2026-11.jsonl.gz

Example (the size of a data folder, as ``status`` shows it)::

    >>> human_bytes(0), human_bytes(1536), human_bytes(3 * 1024**3)
    ('0 B', '1.5 KiB', '3.0 GiB')
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sinks.store import Store, StoreError, open_store
from streams.settings import Settings, get_settings

MAX_LISTED_INVALID = 20
PROGRESS_EVERY = 2000  # lines between progress bar updates (an update per line would cost more than the send)

_FIRING = """
SELECT alert_id, rule, severity, app, metric, value, changed_at AS fired_at
FROM alerts
WHERE state = 'firing' AND alert_id NOT IN (SELECT alert_id FROM alerts WHERE state = 'resolved')
QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY detected_at) = 1
ORDER BY changed_at DESC
"""


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def folder_sizes(root: str | Path | Store) -> dict[str, int]:
    """Bytes per top-level folder of the data folder, a folder or an object store (files directly in it count
    under ``.``)."""
    sizes: dict[str, int] = {}
    try:
        stats = open_store(root).stat_files()
    except OSError:
        return sizes  # no such folder yet, or it changed while we walked
    for stat in stats:
        top = stat.rel.split("/", 1)[0] if "/" in stat.rel else "."
        sizes[top] = sizes.get(top, 0) + stat.size
    return dict(sorted(sizes.items()))


def _quiet_client(settings: Settings) -> dict[str, Any]:
    """Client settings whose librdkafka log lines go to Python's logging, errors only: no line per retried
    connection or per group coordinator still loading."""
    logger = logging.getLogger("evalstream.kafka")
    logger.setLevel(logging.ERROR)
    return {"bootstrap.servers": settings.bootstrap_servers, "logger": logger}


def broker_view(settings: Settings, timeout_s: float) -> tuple[dict[str, int | None], dict[int, tuple[int, int, int]]]:
    """Partitions per topic (None: missing), and per events partition (committed, high watermark, lag); raises
    KafkaException when the broker does not answer."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(_quiet_client(settings))
    existing = admin.list_topics(timeout=timeout_s).topics
    names = [settings.events_topic, settings.dlq_topic, settings.metrics_topic, settings.alerts_topic]
    topics = {t: (len(existing[t].partitions) if t in existing else None) for t in names}
    lag: dict[int, tuple[int, int, int]] = {}
    if topics[settings.events_topic]:
        consumer = Consumer({**_quiet_client(settings), "group.id": settings.worker_id, "enable.auto.commit": False})
        try:
            wanted = [
                TopicPartition(settings.events_topic, p) for p in sorted(existing[settings.events_topic].partitions)
            ]
            for tp in consumer.committed(wanted, timeout=timeout_s):
                low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
                committed = tp.offset if tp.offset >= 0 else -1
                lag[tp.partition] = (committed, high, high - (committed if committed >= 0 else low))
        finally:
            consumer.close()
    return topics, lag


def _firing_alerts(data_dir: str | Path | Store) -> list[dict[str, Any]]:
    from sinks.catalog import connect, query

    con = connect(data_dir)
    try:
        columns, rows = query(con, _FIRING)
    finally:
        con.close()
    return [dict(zip(columns, r, strict=True)) for r in rows]


def _table(console: Console, title: str, *columns: str) -> Table:
    """An empty table under a bold heading (a line of its own: a table title would wrap at the table's width)."""
    console.print(f"\n[bold]{title}[/]")
    table = Table()
    for column in columns:
        table.add_column(column)
    return table


def _show_broker(console: Console, settings: Settings, timeout_s: float) -> bool:
    """The broker, the topics and the worker group's lag; False when the broker did not answer."""
    from confluent_kafka import KafkaException

    try:
        topics, lag = broker_view(settings, timeout_s)
    except KafkaException as exc:
        console.print(f"[red]broker unreachable[/] at {escape(settings.bootstrap_servers)}: {escape(str(exc))}")
        return False
    console.print(f"[green]broker reachable[/] at {escape(settings.bootstrap_servers)}")
    shown = _table(console, "Topics", "topic", "partitions")
    for name, partitions in topics.items():
        shown.add_row(escape(name), str(partitions) if partitions is not None else "[yellow]missing[/]")
    console.print(shown)
    title = f"Consumer lag of group {escape(settings.worker_id)} (committed offsets)"
    shown = _table(console, title, "partition", "committed", "end", "lag")
    for partition, (committed, high, behind) in lag.items():
        shown.add_row(str(partition), str(committed) if committed >= 0 else "none", str(high), str(behind))
    shown.add_row("total", "", "", str(sum(v[2] for v in lag.values())))
    console.print(shown)
    return True


def _show_workers(console: Console, data_dir: str | Path | Store) -> None:
    from sinks.status import STALE_AFTER_S, read_statuses, summarize

    workers = read_statuses(data_dir)
    title = f"Workers (their status files; stale after {STALE_AFTER_S:.0f} s without one)"
    shown = _table(console, title, "worker", "host", "state", "updated", "partitions", "events/s", "last batch")
    for w in workers:
        state = {"running": "[green]running[/]", "stale": "[red]stale[/]"}.get(w["state"], w["state"])
        shown.add_row(f"{escape(str(w['worker_id']))} ({w['pid']})", escape(str(w.get("host"))), state,
                      f"{w['age_s']:.0f} s ago", ",".join(map(str, w.get("partitions") or [])),
                      str(w.get("events_per_s", "")), str(w.get("last_batch_at") or "none"))  # fmt: skip
    console.print(shown)
    summary = summarize(workers)
    console.print(f"last batch: {summary['last_batch_at'] or 'none'} · events/s: {summary['events_per_s']} · "
                  f"late events: {summary['late_events']}")  # fmt: skip
    sizes = folder_sizes(data_dir)
    parts = ", ".join(f"{escape(k)} {human_bytes(v)}" for k, v in sizes.items()) or "empty"
    console.print(f"data folder {escape(open_store(data_dir).uri)}: {human_bytes(sum(sizes.values()))} ({parts})")


def _show_alerts(console: Console, data_dir: str | Path | Store) -> None:
    firing = _firing_alerts(data_dir)
    shown = _table(console, f"Firing alerts ({len(firing)})", "rule", "severity", "app", "metric", "value", "since")
    for a in firing:
        since = a["fired_at"].strftime("%Y-%m-%d %H:%M:%SZ") if a["fired_at"] else ""
        value = f"{a['value']:.4g}" if isinstance(a["value"], float) else str(a["value"])
        shown.add_row(*(escape(str(a[k])) for k in ("rule", "severity", "app", "metric")), value, since)
    console.print(shown)


def status(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker")] = 10.0,
) -> None:
    """One screen: broker, topics, consumer lag, workers, data folder, firing alerts (exit 1: broker unreachable)."""
    settings = get_settings()
    console = Console(width=None if Console().is_terminal else 160)  # a pipe or a file: wide enough for the tables
    reachable = _show_broker(console, settings, timeout)
    try:
        settings.store.check()
    except StoreError as exc:
        console.print(f"[red]data folder unreachable[/]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    _show_workers(console, settings.store)
    _show_alerts(console, settings.store)
    if not reachable:
        raise typer.Exit(1)


def _key_of(line: bytes) -> bytes | None:
    """The ``session_id`` of a raw line when it has one (as ``publish --raw`` keys it)."""
    try:
        session = json.loads(line).get("session_id")
    except (ValueError, AttributeError):
        return None
    return str(session).encode() if session is not None else None


def _lines(fh: IO[bytes], gz: bool) -> IO[bytes]:
    return gzip.GzipFile(fileobj=fh) if gz else fh  # type: ignore[return-value]


def replay(
    file: Annotated[Path, typer.Argument(help="JSON-lines file, gzip-compressed when its name ends in .gz")],
    raw: Annotated[bool, typer.Option("--raw", help="Send lines as they are, unvalidated")] = False,
) -> None:
    """Backfill events from a JSON-lines file at full speed; invalid lines are skipped, counted and listed."""
    from confluent_kafka import KafkaException
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from streams.sdk.publisher import Publisher, PublishError
    from streams.sdk.schema import EventValidationError, parse_event
    from streams.topics import TopicError, ensure_topics

    settings = get_settings()
    if not file.is_file():
        typer.secho(f"error: no file {file}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        ensure_topics(settings)
    except TopicError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    pub = Publisher(settings.bootstrap_servers, settings.events_topic, config=_quiet_client(settings))
    sent = invalid = 0
    problems: list[str] = []  # the first invalid lines, and lines the producer refused
    started = time.monotonic()
    columns = (
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[sent]:,} sent · {task.fields[rate]:,.0f} events/s · {task.fields[invalid]:,} invalid"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )  # fmt: skip
    with open(file, "rb") as fh, Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(f"replay {file.name}", total=file.stat().st_size, sent=0, rate=0.0, invalid=0)

        def show() -> None:
            rate = sent / max(time.monotonic() - started, 1e-9)
            progress.update(task, completed=fh.tell(), sent=sent, rate=rate, invalid=invalid)

        for n, line in enumerate(_lines(fh, file.name.endswith(".gz")), 1):
            if n % PROGRESS_EVERY == 0:
                show()
            value = line.strip()
            if not value:
                continue
            try:
                if raw:
                    pub.publish_raw(value, _key_of(value))
                else:
                    pub.publish(parse_event(value))
            except EventValidationError as exc:
                invalid += 1
                if invalid <= MAX_LISTED_INVALID:
                    problems.append(f"line {n}: {exc.reason}")
                continue
            except KafkaException as exc:  # refused before it was queued (too large, say): counted as not delivered
                problems.append(f"line {n}: not sent: {exc}")
            sent += 1
        show()
    try:
        pub.close()  # waits for every delivery report
    except PublishError as exc:
        problems.append(f"error: {exc}")
    seconds = time.monotonic() - started
    for problem in problems:
        typer.secho(problem, fg=typer.colors.YELLOW, err=True)
    if invalid > MAX_LISTED_INVALID:
        typer.echo(f"… and {invalid - MAX_LISTED_INVALID} more invalid lines", err=True)
    failed = sent - pub.delivered
    typer.echo(
        f"sent {pub.delivered} events to {settings.events_topic} in {seconds:.1f} s "
        f"({pub.delivered / max(seconds, 1e-9):,.0f} events/s); {invalid} invalid lines skipped; {failed} not delivered"
    )
    if failed:
        raise typer.Exit(1)
