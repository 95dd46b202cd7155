"""How the tests get a real Apache Kafka 4.x broker.

1. ``EVALSTREAM_BOOTSTRAP_SERVERS`` when set (``.ci/run`` starts one with ``evalstream kafka start``);
2. else the official ``apache/kafka`` image through testcontainers, when a Docker engine answers;
3. else a local broker process (jars from Maven Central, see :mod:`streams.local.broker`).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

KAFKA_IMAGE = "apache/kafka:4.2.0"


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


@contextlib.contextmanager
def _testcontainers_kafka() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def kafka_bootstrap_servers() -> Iterator[str]:
    configured = os.environ.get("EVALSTREAM_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
    elif _docker_answers():
        with _testcontainers_kafka() as bootstrap:
            yield bootstrap
    else:
        from streams.local.broker import running_broker

        with running_broker() as broker:
            yield broker.bootstrap_servers
