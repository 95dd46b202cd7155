from __future__ import annotations

import json

import pytest

from streams.local.sample import generate
from streams.sdk.publisher import EventValidationError, Publisher, PublishError
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.helpers import consume_all

pytestmark = pytest.mark.integration


def test_publish_keys_by_session_and_keeps_session_order(settings: Settings) -> None:
    partitions = ensure_topics(settings)
    events = generate(n_events=200, n_sessions=10, seed=5).events
    with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
        assert pub.publish_many(events) == 200
    assert pub.delivered == 200
    messages = consume_all(settings.bootstrap_servers, settings.events_topic, partitions)
    assert len(messages) == 200
    by_session: dict[str, list[str]] = {}
    for msg in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        body = json.loads(msg.value())
        assert msg.key() == body["session_id"].encode()
        by_session.setdefault(body["session_id"], []).append(body["event_id"])
    for session, ids in by_session.items():
        assert ids == [e["event_id"] for e in events if e["session_id"] == session]
    assert len({m.partition() for m in messages}) > 1


def test_invalid_events_raise_before_sending(settings: Settings) -> None:
    ensure_topics(settings)
    with (
        Publisher(settings.bootstrap_servers, settings.events_topic) as pub,
        pytest.raises(EventValidationError, match="thumbs"),
    ):
        pub.publish(
            {
                "type": "feedback",
                "event_id": "e",
                "ts": "2026-11-25T10:00:00Z",
                "session_id": "s",
                "app": "a",
                "generation_id": "g",
                "thumbs": "maybe",
            }
        )
    assert pub.delivered == 0


def test_undeliverable_events_are_reported_by_flush() -> None:
    pub = Publisher("127.0.0.1:1", "llm.events", config={"message.timeout.ms": 1500})
    pub.publish(generate(n_events=1, seed=1).events[0])
    with pytest.raises(PublishError) as info:
        pub.flush(timeout_s=10)
    assert len(info.value.failures) == 1


def test_a_closed_publisher_refuses_to_publish_and_closes_once() -> None:
    pub = Publisher("127.0.0.1:1", "llm.events")  # nothing is sent, so no broker is needed
    pub.close()
    pub.close()
    with pytest.raises(RuntimeError, match="closed"):
        pub.publish_raw(b"{}", b"k")
