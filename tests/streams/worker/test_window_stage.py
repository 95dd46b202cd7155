"""The window stage between the batches and the metrics topic: closed windows go out keyed by app, then a closed
marker per source partition to every metrics partition; the state is forgotten only once Kafka acknowledged them,
and what it emits is what the evaluator completes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics.alert_rules import RuleSet
from streams.alerts.evaluator import Evaluator
from streams.worker.counters import WorkerCounters
from streams.worker.persist import PartitionBatch
from streams.worker.window_stage import WindowStage
from streams.worker.windows import LiveWindows

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
NOW = (T0 + timedelta(days=1)).timestamp()


class MetricsTopic:
    """Keeps what was sent; ``fail`` makes the next send's acknowledgement fail."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = False

    async def send(self, key: bytes | None, value: bytes, partition: int | None = None) -> Any:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            done.set_exception(RuntimeError("broker down"))
        else:
            self.sent.append({**json.loads(value), "key": key, "to": partition})
            done.set_result(None)
        return done


def part(partition: int, first: int, seconds: list[float], value: float = 1.0) -> PartitionBatch:
    batch = PartitionBatch("llm.events", partition, first, first + len(seconds) - 1, None)
    for i, s in enumerate(seconds):
        batch.scores.append({"ts": T0 + timedelta(seconds=s), "app": "chat", "route": "a", "model": "m",
                             "prompt_version": "v1", "index_version": None, "component": None,
                             "metric": "thumbs_up", "value": value})  # fmt: skip
        batch.score_offsets.append(first + i)
    return batch


def stage(topic: MetricsTopic, table: dict[str, Any] | None = None) -> WindowStage:
    live = LiveWindows(table if table is not None else {}, width_s=60, grace_s=0, idle_s=3600)
    return WindowStage(live, topic, source_partitions=2, metrics_partitions=3, assigned=lambda: [0, 1],
                       counters=WorkerCounters())  # fmt: skip


def test_closed_windows_then_markers_go_out_and_the_evaluator_completes_them() -> None:
    topic = MetricsTopic()
    windows = stage(topic)
    asyncio.run(windows.after_batch([part(0, 0, [1, 2, 70]), part(1, 0, [5, 65])], NOW))
    kinds = [(m["type"], m["key"], m["to"]) for m in topic.sent]
    assert kinds[:2] == [("window", b"chat", None), ("window", b"chat", None)]
    assert sorted(kinds[2:]) == sorted(("closed", None, q) for q in range(3) for _ in (0, 1))
    assert windows.counters.windows_emitted == 2
    evaluator = Evaluator({}, RuleSet(), width_s=60)
    completed = [w for m in topic.sent for w in evaluator.on_message(m["to"] or 0, m).windows]
    [window] = completed
    assert [(r["count"], r["sum"], r["partitions"]) for r in window.rows] == [(3, 3.0, 2)]


def test_nothing_is_forgotten_when_kafka_does_not_acknowledge() -> None:
    topic, table = MetricsTopic(), {}
    windows = stage(topic, table)
    topic.fail = True
    with pytest.raises(RuntimeError):
        asyncio.run(windows.after_batch([part(0, 0, [1, 70]), part(1, 0, [70])], NOW))
    assert any(k.startswith("w|0|") for k in table)  # still held: the next close emits it again
    topic.fail = False
    asyncio.run(windows.tick())
    assert [m["metrics"]["thumbs_up"]["n"] for m in topic.sent if m["type"] == "window"] == [1]


def test_a_partition_without_scores_is_said_empty_once_per_assignment() -> None:
    topic = MetricsTopic()
    windows = stage(topic)
    asyncio.run(windows.after_batch([part(0, 0, [1, 70])], NOW))
    asyncio.run(windows.tick())
    empties = [(m["partition"], m["to"]) for m in topic.sent if m.get("empty")]
    assert empties == [(1, 0), (1, 1), (1, 2)]  # partition 1, to each metrics partition, once
    windows.reset()
    asyncio.run(windows.tick())
    assert len([m for m in topic.sent if m.get("empty")]) == 6
