"""``evalstream kafka``: a local Apache Kafka broker (KRaft, one node) for development, without Docker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

kafka_app = typer.Typer(help="A local Apache Kafka broker (KRaft, one node) for development, without Docker.")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _broker_dir(data_dir: Path | None) -> Path:
    from streams.local.broker.local import cache_root

    return data_dir or cache_root() / "broker"


@kafka_app.command("start")
def kafka_start(
    data_dir: Annotated[
        Path | None, typer.Option(help="Broker data folder (default: ~/.cache/evalstream/broker)")
    ] = None,
    port: Annotated[int, typer.Option(help="Listener port (0 = a free one)")] = 0,
    version: Annotated[str | None, typer.Option(help="Apache Kafka version from Maven Central")] = None,
) -> None:
    """Start a local broker in the background and print its bootstrap address."""
    from streams.local.broker import DEFAULT_KAFKA_VERSION, BrokerError, LocalBroker

    folder = _broker_dir(data_dir)
    running = LocalBroker.attach(folder)
    if running:
        typer.echo(running.bootstrap_servers)
        typer.secho(f"(already running, pid {running.pid})", err=True)
        return
    try:
        broker = LocalBroker.start(folder, port=port, version=version or DEFAULT_KAFKA_VERSION)
    except BrokerError as exc:
        _fail(str(exc))
        return
    typer.echo(broker.bootstrap_servers)
    typer.secho(
        f"Kafka {broker.version} running (pid {broker.pid}); logs: {broker.log_file}\n"
        f"  export EVALSTREAM_BOOTSTRAP_SERVERS={broker.bootstrap_servers}",
        err=True,
    )


@kafka_app.command("stop")
def kafka_stop(data_dir: Annotated[Path | None, typer.Option(help="Broker data folder")] = None) -> None:
    """Stop the broker started by `evalstream kafka start`."""
    from streams.local.broker import LocalBroker

    broker = LocalBroker.attach(_broker_dir(data_dir))
    if broker is None:
        typer.secho("no local broker is running", err=True)
        return
    broker.stop()
    typer.secho(f"stopped Kafka (pid {broker.pid})", err=True)


@kafka_app.command("status")
def kafka_status(data_dir: Annotated[Path | None, typer.Option(help="Broker data folder")] = None) -> None:
    """Print the bootstrap address of the running local broker (exit 1 when none)."""
    from streams.local.broker import LocalBroker

    broker = LocalBroker.attach(_broker_dir(data_dir))
    if broker is None:
        _fail("no local broker is running")
        return
    typer.echo(broker.bootstrap_servers)
