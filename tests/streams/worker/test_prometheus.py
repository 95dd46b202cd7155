"""The worker's metrics without Kafka: a real batch through BatchProcessor moves the event, dead-letter and batch
metrics; the alerting agent's firing and its webhook attempts (against a real receiver) move theirs; the HTTP
endpoint serves parseable text from its own registry and a taken port is not fatal; the status file says what the
counters say."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import httpx
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sinks.status import read_statuses
from streams.alerts.agent import AlertAgent, load_rules
from streams.settings import Settings
from streams.worker.batch import BatchProcessor
from streams.worker.counters import WorkerCounters
from streams.worker.join import GenerationJoin
from streams.worker.persist import ParquetSinks
from streams.worker.prometheus import StatusReporter, WorkerMetrics, reason_label
from tests.helpers import DeadLetters, Event, Message
from tests.streams.alerts.test_agent import RULE, Topic, window_messages


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def message(i: int, kind: str) -> bytes:
    base = {"event_id": f"e{i}", "ts": "2026-11-25T10:00:00Z", "session_id": "s", "app": "a", "generation_id": "g0"}
    if kind == "generation":
        base |= {"type": "generation", "generation_id": f"g{i}", "route": "r", "model": "m", "prompt_version": "v",
                 "input": "q", "output": f"answer {i}"}  # fmt: skip
    else:
        base |= {"type": "feedback", "thumbs": "up"}
    return json.dumps(base).encode()


def test_a_batch_moves_the_event_dead_letter_and_batch_metrics(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embed_backend="off")
    counters = WorkerCounters()
    metrics = WorkerMetrics(counters)
    dlq, sinks = DeadLetters(), ParquetSinks(tmp_path)
    processor = BatchProcessor(GenerationJoin({}, 3600), dlq, sinks, counters, {}, settings)  # type: ignore[arg-type]
    processor.observers.append(metrics.on_batch)
    values = [message(0, "generation"), message(1, "generation"), message(2, "feedback"), b"{not json", b"[1, 2]",
              json.dumps({"type": "feedback", "event_id": "x"}).encode()]  # fmt: skip
    batch = [Event(Message("t", 0, offset, None, v)) for offset, v in enumerate(values)]
    asyncio.run(processor.process(batch))  # type: ignore[arg-type]

    found = samples(metrics)
    events = {dict(k[1])["type"]: v for k, v in found.items() if k[0] == "evalstream_worker_events_total"}
    assert events == {"generation": 2, "feedback": 1, "invalid": 3}
    reasons = {dict(k[1])["reason"]: v for k, v in found.items() if k[0] == "evalstream_worker_dead_letters_total"}
    assert sum(reasons.values()) == 3 and all(len(r) <= 60 and not any(c.isdigit() for c in r) for r in reasons)
    assert {
        "malformed JSON: Expecting property name enclosed in double q",
        "event must be a JSON object, got list",
    } < set(reasons)
    assert found[("evalstream_worker_batch_seconds_count", ())] == 1
    assert found[("evalstream_worker_valid_total", ())] == counters.valid == 3
    assert found[("evalstream_worker_dead_lettered_total", ())] == counters.dead_lettered == 3
    assert found[("evalstream_worker_scoring_seconds_total", ())] == counters.seconds_scoring
    assert metrics.last_batch_at is not None


def test_reason_labels_stay_few() -> None:
    reasons = [f"malformed JSON: Expecting value: line 1 column {i} (char {i - 1})" for i in range(1, 50)]
    reasons += [f"type: must be one of generation, feedback (got 'kind-{i}')" for i in range(50)]
    reasons += [f"processing error: ValueError: bad value {i!r} in {'x' * i}" for i in range(50)]
    assert len({reason_label(r) for r in reasons}) == 3


def test_alerts_and_their_deliveries_are_counted(tmp_path: Path) -> None:
    answers = iter([503, 200])

    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=next(answers, 200))

    async def scenario() -> WorkerMetrics:
        server = web.Application()
        server.router.add_post("/hook", hook)
        runner = web.AppRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        rules = tmp_path / "rules.toml"
        rules.write_text(RULE.format(url=f"http://127.0.0.1:{port}/hook"))
        settings = Settings(alert_rules=rules, data_dir=tmp_path / "data")
        agent = AlertAgent(settings, {}, load_rules(settings))
        metrics = WorkerMetrics(WorkerCounters())
        agent.on_alert.append(metrics.on_alert)
        agent.on_delivery.append(metrics.on_delivery)
        agent.dispatcher.backoff_s = 0.05
        await agent.dispatcher.start()
        for m in window_messages():
            await agent.handle(0, json.dumps(m).encode(), Topic())
        await agent.dispatcher.drain(10)
        await agent.dispatcher.close()
        await runner.cleanup()
        return metrics

    found = samples(asyncio.run(scenario()))
    alerts = {k[1]: v for k, v in found.items() if k[0] == "evalstream_worker_alerts_total"}
    assert list(alerts.values()) == [1.0] and dict(next(iter(alerts)))["state"] == "firing"
    name = "evalstream_worker_alert_deliveries_total"
    deliveries = {
        dict(k[1])["outcome"]: v for k, v in found.items() if k[0] == name and dict(k[1])["receiver"] == "ops"
    }
    assert deliveries == {"retrying": 1, "delivered": 1}


def test_the_endpoint_serves_its_own_registry_and_a_taken_port_is_not_fatal() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one, two = WorkerMetrics(WorkerCounters(valid=5)), WorkerMetrics(WorkerCounters(valid=7))
    assert one.serve("127.0.0.1", port)
    try:
        assert not two.serve("127.0.0.1", port)  # a second worker on the machine runs on without metrics
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["evalstream_worker_valid"].samples[0].value == 5
    finally:
        one.stop()


def test_the_status_file_says_what_the_counters_say(tmp_path: Path) -> None:
    counters = WorkerCounters()
    metrics = WorkerMetrics(counters)
    reporter = StatusReporter(Settings(data_dir=tmp_path, worker_id="w/1"), counters, metrics)
    reporter.write({0: 4, 1: 0}, [0, 1])
    counters.valid, counters.late_events = 250, 3
    reporter.write({0: 0, 1: 0}, [0, 1])
    (status,) = read_statuses(tmp_path)
    assert (status["worker_id"], status["state"], status["partitions"]) == ("w/1", "running", [0, 1])
    assert status["counters"]["valid"] == 250 and status["lag"] == {"0": 0, "1": 0}
    assert status["events_per_s"] > 0 and status["last_batch_at"] is None
    assert status["host"] == socket.gethostname() and status["stopped_at"] is None
    reporter.write({}, [], stopped=True)
    assert read_statuses(tmp_path)[0]["state"] == "stopped"
    # workers on several machines share one data folder and worker id: the host is in the name
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())
    assert [p.name for p in (tmp_path / "_status").iterdir()] == [f"w_1-{host}-{reporter.pid}.json"]
