"""A local, single-node Apache Kafka broker (KRaft, combined broker + controller) without Docker.

The broker's jars come from Maven Central through the small ``pom.xml`` beside this module, resolved once
with ``mvn dependency:copy-dependencies`` into a cache folder outside the repository and reused afterwards.

Usage (needs Java, and Maven Central the first time)::

    from streams.local.broker import LocalBroker
    broker = LocalBroker.start(data_dir="/tmp/evalstream-kafka")
    broker.bootstrap_servers   # '127.0.0.1:40123'
    broker.stop()
"""

from __future__ import annotations

from streams.local.broker.local import (
    DEFAULT_KAFKA_VERSION,
    BrokerError,
    LocalBroker,
    ensure_jars,
    running_broker,
)

__all__ = ["DEFAULT_KAFKA_VERSION", "BrokerError", "LocalBroker", "ensure_jars", "running_broker"]
