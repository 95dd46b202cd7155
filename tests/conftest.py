from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.settings import get_settings as get_api_settings
from streams.settings import Settings, get_settings
from tests.kafka_fixture import kafka_bootstrap_servers
from tests.object_store import moto_endpoint as moto_endpoint
from tests.object_store import s3_root as s3_root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the broker (directly or through ``settings``) is an integration test, so
    ``-m "not integration"`` runs without one."""
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker for the whole test session."""
    with kafka_bootstrap_servers() as bootstrap:
        yield bootstrap


@pytest.fixture
def settings(kafka: str, tmp_path: Path) -> Settings:
    """Settings with topics, consumer group and data folder unique to one test."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        bootstrap_servers=kafka,
        events_topic=f"llm.events.{tag}",
        metrics_topic=f"llm.metrics.{tag}",
        alerts_topic=f"llm.alerts.{tag}",
        worker_id=f"evalstream-test-{tag}",
        data_dir=tmp_path / "data",
        topic_partitions=4,
        flush_interval_s=1.0,
    )


@pytest.fixture(autouse=True)
def _fresh_settings_cache() -> Iterator[None]:
    get_settings.cache_clear()
    get_api_settings.cache_clear()
    yield
    get_settings.cache_clear()
    get_api_settings.cache_clear()
