"""The publisher SDK. Marked by what each test needs: the ones that take the ``settings`` fixture need a broker
(``tests/conftest.py`` marks them ``integration``); the others point the publisher at ``127.0.0.1:1``, where
nothing listens, and need none."""

from __future__ import annotations

import json

import pytest

from streams.local.sample import generate
from streams.sdk.publisher import EventValidationError, Publisher, PublishError
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.helpers import consume_all

NO_BROKER = "127.0.0.1:1"  # nothing listens on port 1: a publisher pointed here can deliver nothing


def test_publish_keys_by_session_and_keeps_session_order(settings: Settings) -> None:
    """Every event arrives, keyed by its session, and each session's events keep their order (needs a broker)."""
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


def test_invalid_events_raise_before_sending() -> None:
    """An invalid event raises EventValidationError and is never queued: nothing waits to be sent, nothing was
    delivered, nothing failed. No broker is needed for that."""
    pub = Publisher(NO_BROKER, "llm.events")
    try:
        with pytest.raises(EventValidationError, match=r"^thumbs: Input should be 'up' or 'down'$"):
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
        with pytest.raises(EventValidationError, match=r"^type: must be one of .* \(got 'like'\)$"):
            pub.publish({"type": "like", "event_id": "e2"})
        assert pub.flush(timeout_s=0) == 0  # with an event queued, flush(0) would raise: it could not be delivered
        assert pub.delivered == 0 and pub.failures == []
    finally:
        pub.close(timeout_s=0)


def test_undeliverable_events_are_reported_by_flush() -> None:
    """A valid event that cannot be delivered is reported by flush() as a PublishError (no broker needed)."""
    pub = Publisher(NO_BROKER, "llm.events", config={"message.timeout.ms": 1500})
    pub.publish(generate(n_events=1, seed=1).events[0])
    with pytest.raises(PublishError) as info:
        pub.flush(timeout_s=10)
    assert len(info.value.failures) == 1


def test_flush_waits_by_default_until_every_message_is_delivered_or_failed() -> None:
    """A message still queued is never reported as lost while the client may still deliver it: by default flush()
    waits past message.timeout.ms, so it reports the message's failure, not "still undelivered"."""
    pub = Publisher(NO_BROKER, "llm.events", config={"message.timeout.ms": 2500})
    pub.publish(generate(n_events=1, seed=1).events[0])
    with pytest.raises(PublishError, match="1 events failed") as info:
        pub.flush()
    assert len(info.value.failures) == 1
    pub.publish(generate(n_events=1, seed=2).events[0])
    with pytest.raises(PublishError, match=r"1 events still undelivered after 0\.2s"):
        pub.flush(timeout_s=0.2)  # a shorter wait of the caller's choosing
    with pytest.raises(PublishError):  # close() flushes too, and says so
        pub.close(timeout_s=0)


def test_a_closed_publisher_refuses_to_publish_and_closes_once() -> None:
    """close() twice is a no-op and publishing after it raises (nothing is sent, so no broker is needed)."""
    pub = Publisher(NO_BROKER, "llm.events")
    pub.close()
    pub.close()
    with pytest.raises(RuntimeError, match="closed"):
        pub.publish_raw(b"{}", b"k")
