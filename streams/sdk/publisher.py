"""Publisher SDK: send LLM events to Kafka from an application (``confluent-kafka``).

- idempotent producer (``enable.idempotence``, ``acks=all``): retries never duplicate or reorder;
- batching (``linger.ms``) and delivery reports: failures are collected and raised by :meth:`flush`;
- client-side validation against :mod:`streams.sdk.schema`, with a clear :class:`EventValidationError`;
- key = ``session_id``, so a session's events stay in order on one partition (the worker's join needs it).

Usage (needs a broker)::

    with Publisher("127.0.0.1:9092") as pub:
        pub.publish({"type": "feedback", "event_id": "e1", "ts": "2026-11-25T10:00:00Z",
                     "session_id": "s1", "app": "chat", "generation_id": "g1", "thumbs": "up"})

Example (an invalid event is refused before it is queued, so no broker is needed; nothing listens on port 1)::

    >>> pub = Publisher("127.0.0.1:1")
    >>> pub.publish({"type": "feedback", "event_id": "e1", "ts": "2026-11-25T10:00:00Z",
    ...              "session_id": "s1", "app": "chat", "generation_id": "g1", "thumbs": "maybe"})
    Traceback (most recent call last):
    streams.sdk.schema.EventValidationError: thumbs: Input should be 'up' or 'down'
    >>> pub.flush(timeout_s=0)  # nothing waits to be sent, nothing was delivered
    0
    >>> pub.close()
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.sdk.schema import Event, EventValidationError, validate_event

__all__ = ["EventValidationError", "PublishError", "Publisher"]


class PublishError(RuntimeError):
    """Some events were not delivered; ``failures`` lists ``(key, error)`` pairs."""

    def __init__(self, message: str, failures: list[tuple[bytes | None, str]]) -> None:
        super().__init__(message)
        self.failures = failures


class Publisher:
    """An idempotent, batching producer of evalstream events (use as a context manager, or call close())."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = "llm.events",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.delivered = 0
        self.failures: list[tuple[bytes | None, str]] = []
        settings = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            # a broker away for less than this loses nothing: the client queues and retries (tested with a
            # broker stopped and killed mid-stream)
            "message.timeout.ms": 120_000,
            **(config or {}),
        }
        # by then every message sent is delivered or has failed: flush() never gives up on one still queued
        self._settled_s = int(settings["message.timeout.ms"]) / 1000 + 5
        self._producer: Producer | None = Producer(settings)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failures.append((msg.key(), err.str()))

    @property
    def _live(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("this Publisher is closed")
        return self._producer

    def _produce(self, key: bytes | None, value: bytes | None) -> None:
        producer = self._live
        while True:
            try:
                producer.produce(self.topic, key=key, value=value, on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.1)
        producer.poll(0)

    def publish(self, event: Event | Mapping[str, Any]) -> Event:
        """Validate and send one event (asynchronously); returns the validated event.

        Raises :class:`EventValidationError` (nothing is sent) when the event is invalid.
        """
        model = validate_event(dict(event) if isinstance(event, Mapping) else event)
        self._produce(model.session_id.encode(), model.to_json_bytes())
        return model

    def publish_many(self, events: Iterable[Event | Mapping[str, Any]]) -> int:
        count = 0
        for event in events:
            self.publish(event)
            count += 1
        return count

    def publish_raw(self, value: bytes | None, key: bytes | None = None) -> None:
        """Send bytes as they are, unvalidated (for tests of bad input and for relaying)."""
        self._produce(key, value)

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait for every delivery report; returns the total delivered. Raises :class:`PublishError` on loss.

        By default it waits until each message is delivered or has failed (``message.timeout.ms`` + 5 s). With a
        shorter ``timeout_s``, messages still queued are reported as undelivered but may be delivered later:
        publishing them again is safe, the worker dead-letters the second copy as a duplicate ``event_id``.
        """
        timeout_s = self._settled_s if timeout_s is None else timeout_s
        remaining = self._live.flush(timeout_s)
        if remaining:
            raise PublishError(f"{remaining} events still undelivered after {timeout_s}s", list(self.failures))
        if self.failures:
            failures, self.failures = self.failures, []
            raise PublishError(f"{len(failures)} events failed: {failures[0][1]}", failures)
        return self.delivered

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then shut the client down (its threads would otherwise keep reconnecting to a broker that
        went away until garbage collection). Closing twice is a no-op; publishing after it is an error."""
        if self._producer is None:
            return
        try:
            self.flush(timeout_s)
        finally:
            producer, self._producer = self._producer, None
            producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
