"""The ``evalstream`` command line.

Usage::

    $ evalstream kafka start            # a local Apache Kafka broker, prints its bootstrap address
    $ evalstream worker                 # the Faust worker (with the alerting agent)
    $ evalstream alerts                 # the alerting agent alone
    $ evalstream encoder --socket PATH  # one embedding model shared by the workers of this machine
    $ evalstream api                    # the HTTP API on http://127.0.0.1:8000
    $ evalstream otlp                   # OTLP/HTTP traces in on http://127.0.0.1:4318/v1/traces
    $ evalstream judge                  # the evaluation config's LLM judges (EVALSTREAM_JUDGE_BASE_URL)
    $ evalstream publish events.jsonl   # send events
    $ evalstream sql "SELECT metric, count(*) FROM scores GROUP BY ALL"
    $ evalstream clusters --app support-bot # the prompt classes that fail systematically (last 24 h)
    $ evalstream simulate --backfill 30 # realistic traffic with incidents (docs/demo.md)
    $ evalstream demo                   # all of the above with simulated traffic and its story
    $ evalstream status                 # broker, topics, consumer lag, workers, data folder, firing alerts
    $ evalstream replay old.jsonl.gz    # backfill at full speed (invalid lines skipped and listed)

Example (``publish`` checks every line before it sends any, so a bad file is refused without a broker)::

    >>> from typer.testing import CliRunner
    >>> result = CliRunner().invoke(app, ["publish", "-"], input='{"type": "regenerate"}\\nnot json\\n')
    >>> result.exit_code
    2
    >>> print(result.stderr, end="")
    line 1: event_id: Field required; ts: Field required; ...
    line 2: malformed JSON: Expecting value: line 1 column 1 (char 0)
    error: 2 of 2 lines are invalid; nothing was sent (use --raw to send anyway)
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from sinks.store import Store, StoreError
from streams import cli_ops
from streams.cli_kafka import kafka_app
from streams.settings import Settings, get_settings

app = typer.Typer(help="evalstream: online evaluation of LLM applications from Kafka traffic.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _store_or_fail(settings: Settings) -> Store:
    """The settings' data folder, checked: an unreachable store or a missing bucket ends the command, saying why."""
    try:
        settings.store.check()
    except StoreError as exc:
        _fail(str(exc))
    return settings.store


@app.command()
def worker() -> None:
    """Run the Faust worker (settings from EVALSTREAM_* environment variables)."""
    from metrics.alert_rules import RulesError
    from streams.embedding.model import ModelNotFoundError
    from streams.embedding.protocol import RemoteEncoderError
    from streams.topics import TopicError
    from streams.worker.app import create_app, run_worker
    from streams.worker.evalconfig import ConfigError

    settings = get_settings()
    try:
        faust_app = create_app(settings)
    except (TopicError, ConfigError, ModelNotFoundError, RemoteEncoderError, RulesError) as exc:
        _fail(str(exc))
        return
    sys.argv = [sys.argv[0]]  # Faust's worker parses argv
    run_worker(faust_app, loglevel=settings.log_level)


@app.command()
def alerts() -> None:
    """Run the alerting agent on its own (with EVALSTREAM_ALERTS_IN_WORKER=false on the workers)."""
    from streams.alerts.service import serve

    problem = serve(get_settings())
    if problem:
        _fail(problem, 2)


@app.command()
def encoder(
    socket_path: Annotated[
        Path | None, typer.Option("--socket", help="Unix socket to listen on (default EVALSTREAM_EMBED_SERVER)")
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Encode calls on the model at once (2: one is tokenized while one runs)")
    ] = 2,
) -> None:
    """Serve one embedding model to every worker of this machine that sets EVALSTREAM_EMBED_SERVER to its socket.

    The model comes from the EVALSTREAM_EMBED_* settings (backend, batch size, threads); runs until SIGTERM/Ctrl+C.
    """
    import logging
    import signal

    from streams.embedding.encoder import load_encoder
    from streams.embedding.model import ModelNotFoundError
    from streams.embedding.server import EncoderServer, EncoderServerError

    settings = get_settings()
    path = socket_path or settings.embed_server
    if path is None:
        _fail("say where to listen: --socket PATH or EVALSTREAM_EMBED_SERVER=PATH")
        return
    if settings.embed_backend == "off":
        _fail("EVALSTREAM_EMBED_BACKEND=off: there is no model to serve")
        return
    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    try:
        model = load_encoder(**settings.encoder_options())
        server = EncoderServer(model, path, concurrency)
    except (ModelNotFoundError, EncoderServerError) as exc:
        _fail(str(exc))
        return
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    typer.echo(f"encoder server listening on {path} ({model.name}); stop with Ctrl+C", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address (default EVALSTREAM_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default EVALSTREAM_API_PORT)")] = None,
) -> None:
    """Serve the HTTP API (reads the Parquet files the worker wrote)."""
    import uvicorn

    from api.auth import bind_problem
    from api.settings import get_settings as api_settings

    settings = api_settings()
    if problem := bind_problem(host or settings.api_host, settings):  # no keys: loopback only
        _fail(problem, 2)
    uvicorn.run(
        "api.app:create_app", factory=True, host=host or settings.api_host, port=port or settings.api_port,
        log_level=settings.log_level.lower(),
    )  # fmt: skip


@app.command()
def otlp(
    host: Annotated[str | None, typer.Option(help="Bind address (default EVALSTREAM_OTLP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default EVALSTREAM_OTLP_PORT, 4318)")] = None,
) -> None:
    """Receive OpenTelemetry traces over OTLP/HTTP (POST /v1/traces) and publish them as events."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "streams.otlp.receiver:create_app", factory=True, host=host or settings.otlp_host,
        port=port if port is not None else settings.otlp_port, log_level=settings.log_level.lower(),
    )  # fmt: skip


@app.command()
def judge() -> None:
    """Run the LLM judges of the evaluation config over the generations on Kafka (off by default)."""
    from streams.judges.service import serve

    problem = serve(get_settings())
    if problem:
        _fail(problem, 2)


@app.command()
def publish(
    file: Annotated[Path, typer.Argument(help="JSON-lines file, one event per line ('-' = stdin)")],
    raw: Annotated[bool, typer.Option("--raw", help="Send lines as they are, unvalidated")] = False,
) -> None:
    """Send events from a JSON-lines file. Validates every line first and sends nothing if any is invalid."""
    from streams.sdk.publisher import Publisher, PublishError
    from streams.sdk.schema import EventValidationError, parse_event
    from streams.topics import TopicError, ensure_topics

    settings = get_settings()
    text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    events = []
    if not raw:
        errors = []
        for n, line in lines:
            try:
                events.append(parse_event(line))
            except EventValidationError as exc:
                errors.append(f"line {n}: {exc.reason}")
        if errors:
            for err in errors[:50]:
                typer.secho(err, fg=typer.colors.RED, err=True)
            _fail(
                f"{len(errors)} of {len(lines)} lines are invalid; nothing was sent (use --raw to send anyway)",
                2,
            )
    try:
        ensure_topics(settings)
    except TopicError as exc:
        _fail(str(exc))
    pub = Publisher(settings.bootstrap_servers, settings.events_topic)
    if raw:
        for _, line in lines:
            pub.publish_raw(line.encode(), _session_key(line))
    else:
        pub.publish_many(events)
    try:
        delivered = pub.flush()
    except PublishError as exc:
        _fail(str(exc))
        return
    typer.echo(f"sent {delivered} events to {settings.events_topic}")


def _session_key(line: str) -> bytes | None:
    """The ``session_id`` of a raw line when it has one (bad lines are sent unkeyed)."""
    try:
        session = json.loads(line).get("session_id")
    except (ValueError, AttributeError):
        return None
    return str(session).encode() if session is not None else None


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over the views events, scores and dlq")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per row")] = False,
) -> None:
    """Run DuckDB SQL against the Parquet the worker wrote."""
    import duckdb

    from sinks.catalog import connect

    con = connect(_store_or_fail(get_settings()))
    try:
        rel = con.sql(query)
    except duckdb.Error as exc:
        _fail(str(exc))
        return
    if rel is None:
        return
    if as_json:
        columns = rel.columns
        for row in rel.fetchall():
            typer.echo(json.dumps(dict(zip(columns, row, strict=True)), default=str, ensure_ascii=False))
    else:
        rel.show(max_rows=100)


@app.command()
def compact(
    min_age: Annotated[float, typer.Option(help="Leave files younger than this many seconds")] = 3600,
    every: Annotated[float | None, typer.Option(help="Run again every this many seconds (until Ctrl+C)")] = None,
) -> None:
    """Merge the small Parquet files below the worker's committed offsets into large ones (readers unaffected)."""
    import time

    from streams.compaction import compact_committed
    from streams.topics import TopicError

    settings = get_settings()
    while True:
        try:
            report = compact_committed(settings, min_age)
        except TopicError as exc:
            _fail(str(exc))
            return
        typer.echo(
            f"compacted {report.files_in} files into {report.merged} ({report.rows} rows); "
            f"{report.inputs_deleted} inputs of earlier runs deleted",
            err=True,
        )
        if every is None:
            return
        time.sleep(every)


def _utc_option(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 time as naive UTC (a time without an offset is UTC)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--{name}: not an RFC 3339 time: {value!r}", 2)
        raise
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


@app.command()
def clusters(
    since: Annotated[str | None, typer.Option(help="Window start, RFC 3339 (default: 24 hours before --until)")] = None,
    until: Annotated[str | None, typer.Option(help="Window end, exclusive (default: now)")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app")] = None,
    route: Annotated[str | None, typer.Option(help="Only this route")] = None,
    signals: Annotated[str | None, typer.Option(help="Comma-separated failure signals (default: the config's)")] = None,
    min_lift: Annotated[float, typer.Option(help="Leave out clusters with a lower lift")] = 1.0,
    alpha: Annotated[float, typer.Option(help="Leave out clusters whose adjusted p-value is not below this")] = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON answer instead of a table")] = False,
) -> None:
    """The prompt classes that fail systematically in a window, as GET /v1/clusters answers (the run is stored)."""
    import tomllib

    from api.clustering import ClusterRequest, find_clusters
    from metrics.analysis import AnalysisConfigError, analysis_settings, signals_from_text
    from sinks.catalog import connect
    from streams.cli_tables import print_clusters

    settings = get_settings()
    end = _utc_option(until, "until") or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    start = _utc_option(since, "since") or end - timedelta(hours=24)
    if start >= end:
        _fail("--since must be before --until", 2)
    try:
        config = tomllib.loads(settings.eval_config.read_text("utf-8")) if settings.eval_config else {}
        failure = analysis_settings(config, app_name).clusters
        chosen = signals_from_text(signals, "--signals")
    except (OSError, tomllib.TOMLDecodeError, AnalysisConfigError) as exc:
        _fail(str(exc), 2)
        return
    request = ClusterRequest(start, end, app_name, route, chosen, min_lift, alpha)
    store = _store_or_fail(settings)
    answer = find_clusters(connect(store), store, request, failure)
    if as_json:
        typer.echo(json.dumps(answer, ensure_ascii=False, indent=2))
        return
    print_clusters(answer)


@app.command()
def schema() -> None:
    """Print the JSON Schema of an event."""
    from streams.sdk.schema import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def simulate(
    rate: Annotated[float, typer.Option(min=0.1, help="Events per second (history and live)")] = 5.0,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same traffic")] = 1,
    incident: Annotated[list[str] | None, typer.Option(help="KIND@START[+DURATION], repeatable (docs/demo.md)")] = None,
    backfill: Annotated[float, typer.Option(min=0, help="Minutes of history (ending now) sent first")] = 0,
    duration: Annotated[float, typer.Option(min=0, help="Seconds of live traffic (0 = until Ctrl-C)")] = 0,
) -> None:
    """Realistic traffic of an LLM assistant, with incidents (a model switch, a failing class, a PII leak...)."""
    from streams.local.simulate import simulate_cli

    raise typer.Exit(simulate_cli(rate, seed, incident or [], backfill, duration))


@app.command()
def demo(
    rate: Annotated[float, typer.Option(min=0.1, help="Simulated events per second")] = 5.0,
    backfill: Annotated[float, typer.Option(min=0, help="Minutes of history sent first (the story's)")] = 30,
    seed: Annotated[int, typer.Option(help="The simulator's seed")] = 1,
    duration: Annotated[float, typer.Option(help="Seconds to keep running after the story (0 = until Ctrl-C)")] = 0,
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Where the demo writes (default: a temp folder)")] = None,
) -> None:
    """Broker + worker + API + simulated traffic with incidents, then what it shows and where (docs/demo.md)."""
    from streams.local.demo import run_demo

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise typer.Exit(run_demo(rate, backfill, seed, duration=duration, port=port, data_dir=data_dir))


app.command()(cli_ops.status)  # the bodies live in streams/cli_ops.py
app.command()(cli_ops.replay)

if __name__ == "__main__":
    app()
