"""What several test modules share: stand-ins for Faust's events and dead-letter topic, and a Kafka reader."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(eq=False)
class Event:
    message: Message


class DeadLetters:
    """A dead-letter topic that keeps what was sent (value and headers) and acknowledges it at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, list[tuple[str, bytes]]]] = []

    async def send(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append((value, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def consume_all(bootstrap: str, topic: str, partitions: int) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    while (msg := consumer.poll(5.0)) is not None:
        if msg.error() is None:
            out.append(msg)
    consumer.close()
    return out
