"""What several test modules share: stand-ins for Faust's events and dead-letter topic, and a Kafka reader."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
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


def consume_all(bootstrap: str, topic: str, partitions: int | Iterable[int]) -> list:
    """Every message of ``topic`` (all ``partitions`` of a count, or just those listed), until 5 s pass without one."""
    chosen = range(partitions) if isinstance(partitions, int) else partitions
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in chosen])
    out = []
    while (msg := consumer.poll(5.0)) is not None:
        if msg.error() is None:
            out.append(msg)
    consumer.close()
    return out


def score(event_id: str, ts: datetime, value: float = 1.0) -> dict:
    """A ``scores`` row of metric ``x`` for generation ``g``."""
    return {
        "event_id": event_id,
        "generation_id": "g",
        "ts": ts,
        "app": "a",
        "route": "r",
        "model": "m",
        "prompt_version": "v",
        "metric": "x",
        "value": value,
    }


def files(root: Path) -> list[str]:
    """Every file below ``root``, relative to it, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
