"""``evalstream alerts``: the alerting agent in a worker of its own (its own consumer group and state).

Run it when the scoring workers have ``EVALSTREAM_ALERTS_IN_WORKER=false``: the rules then run (and deliver) on
another machine or at another pace than the scoring. Settings are the worker's (``EVALSTREAM_METRICS_TOPIC``,
``EVALSTREAM_ALERTS_TOPIC``, ``EVALSTREAM_ALERT_RULES``, ``EVALSTREAM_DATA_DIR``); its Faust app id is
``<EVALSTREAM_WORKER_ID>-alerts``.

Usage (needs a broker)::

    problem = serve(Settings(alert_rules=Path("rules.toml")))   # runs until SIGINT/SIGTERM; a str on a bad config
"""

from __future__ import annotations

import faust

from metrics.alert_rules import RulesError
from streams.alerts.agent import install, load_rules
from streams.faust_ext.changelog import BatchedChangelogTable
from streams.settings import Settings
from streams.topics import TopicError, ensure_topics


def create_app(settings: Settings) -> faust.App:
    """The alerting agent's own Faust app; raises RulesError or TopicError."""
    own = settings.model_copy(update={"worker_id": f"{settings.worker_id}-alerts"})
    rules = load_rules(own)  # before Kafka: a bad rules file is the first thing said
    partitions = ensure_topics(own, tables=("alerting",))
    own.store.check()
    app = faust.App(
        own.worker_id,
        broker=";".join(f"kafka://{s.strip()}" for s in own.bootstrap_servers.split(",") if s.strip()),
        store="memory://",
        datadir=str(own.faust_dir.with_name(own.faust_dir.name + "-alerts")),
        topic_partitions=partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    table = BatchedChangelogTable(app, name="alerting", default=None, beacon=app.tables.beacon, partitions=partitions)
    app.tables.add(table)
    install(app, own, table, rules, process="alerting service")
    return app


def serve(settings: Settings) -> str | None:
    """Run until stopped; the reason as text when the rules file or Kafka make it impossible to start."""
    from faust.worker import Worker

    try:
        app = create_app(settings)
    except (RulesError, TopicError) as exc:
        return str(exc)
    Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    return None
