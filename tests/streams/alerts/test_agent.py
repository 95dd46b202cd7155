"""The alerting agent around the evaluator: a bad rules file stops start-up naming the field, an edit at run time
replaces the rules only when it validates, and an alert leaves the outbox only once delivered (so a restart on
the same table delivers it again, with the same idempotency key)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from typer.testing import CliRunner

from metrics.windows import WindowAggregate
from sinks.catalog import connect
from streams.alerts.agent import AlertAgent, load_rules, webhook_payload
from streams.cli import app as cli
from streams.settings import Settings

RULE = """
[[receivers]]
name = "ops"
url = "{url}"
max_attempts = 8

[[rules]]
name = "pii"
kind = "guardrail"
filters = {{ route = "answer" }}
"""


def window_messages(start: int = 0) -> list[dict[str, Any]]:
    part = {"type": "window", "partition": 0, "partitions": 1, "start": start, "end": start + 60,
            "labels": {"app": "chat", "route": "answer"},
            "metrics": {"pii_output": WindowAggregate().update_many([0.0, 3.0]).to_dict()}}  # fmt: skip
    return [part, {"type": "closed", "partition": 0, "partitions": 1, "until": start + 60, "watermark": start + 65}]


class Topic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, key: bytes, value: bytes) -> Any:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[[rules]]\nname = 'x'\nmetric = 'm'\ncomparator = '<'\nthreshold = 'low'\n", "rules[0].threshold"),
        ("[[receivers]]\nname = 'r'\nurl = 'ftp://example.com/x'\n", "receivers[0].url"),
        ("[[rules]\nbroken", "rules.toml"),
    ],
)
def test_the_worker_refuses_to_start_with_an_invalid_rules_file(tmp_path: Path, text: str, field: str) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(text)
    env = {"EVALSTREAM_ALERT_RULES": str(rules), "EVALSTREAM_BOOTSTRAP_SERVERS": "127.0.0.1:1",
           "EVALSTREAM_EMBED_BACKEND": "off", "EVALSTREAM_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    for command in (["worker"], ["alerts"]):
        result = CliRunner().invoke(cli, command, env=env)
        assert result.exit_code != 0 and field in result.stderr, result.stderr


def test_an_edit_replaces_the_rules_only_when_it_validates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULE.format(url="http://127.0.0.1:9/hook"))
    settings = Settings(alert_rules=path, data_dir=tmp_path)
    agent = AlertAgent(settings, {}, load_rules(settings))
    path.write_text("[[rules]]\nname = 'x'\nkind = 'nope'\n")
    with caplog.at_level(logging.ERROR, logger="evalstream.alerts"):
        agent.reload_rules()
    assert [r.name for r in agent.evaluator.rules.rules] == ["pii"]
    assert "rules[0].kind" in caplog.text and "the running rules stay" in caplog.text
    path.write_text(RULE.format(url="http://127.0.0.1:9/hook").replace('"pii"', '"pii-2"'))
    agent.reload_rules()
    assert [r.name for r in agent.evaluator.rules.rules] == ["pii-2"]


def test_an_alert_stays_in_the_outbox_until_delivered_and_a_restart_delivers_it_again(tmp_path: Path) -> None:
    received: list[tuple[str, dict[str, Any]]] = []
    status = {"code": 503}

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers["Idempotency-Key"], json.loads(await request.read())))
        return web.Response(status=status["code"])

    async def scenario() -> None:
        server = web.Application()
        server.router.add_post("/hook", hook)
        runner = web.AppRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        path = tmp_path / "rules.toml"
        path.write_text(RULE.format(url=f"http://127.0.0.1:{port}/hook"))
        settings = Settings(alert_rules=path, data_dir=tmp_path / "data")
        table: dict[str, Any] = {}
        first = AlertAgent(settings, table, load_rules(settings))
        first.dispatcher.backoff_s = 0.05
        await first.dispatcher.start()
        topic = Topic()
        for message in window_messages():
            await first.handle(0, json.dumps(message).encode(), topic)
        while len(received) < 2:  # refused twice, still retrying: the process dies now
            await asyncio.sleep(0.01)
        await first.tick()
        await first.dispatcher.close()
        assert [k for k in table if k.startswith("o|")], "not delivered: it stays for the next process"
        status["code"] = 200
        second = AlertAgent(settings, table, load_rules(settings))  # a restart on the restored table
        await second.dispatcher.start()
        await second.tick()
        await second.dispatcher.drain(10)
        await second.tick()
        assert not [k for k in table if k.startswith("o|")]
        await second.dispatcher.close()
        await runner.cleanup()
        [record] = [json.loads(v) for v in topic.sent]
        assert record["state"] == "firing" and record["group"] == {"app": "chat", "route": "answer"}

    asyncio.run(scenario())
    keys = {key for key, _ in received}
    assert len(keys) == 1 and keys.pop().endswith(":firing")
    assert {body["state"] for _, body in received} == {"firing"}
    log = connect(tmp_path / "data").execute("SELECT attempt, delivered FROM alert_deliveries ORDER BY attempted_at")
    attempts = log.fetchall()
    assert attempts[:2] == [(1, False), (2, False)] and attempts[-1] == (1, True)  # the restart's first attempt


def test_the_webhook_payload_has_readable_times() -> None:
    record = {"alert_id": "a", "state": "firing", "window_start": 0, "window_end": 60, "changed_at": 60,
              "detected_at": 65, "windows": [0], "receivers": ["ops"]}  # fmt: skip
    payload = webhook_payload(record)
    assert payload["window_start"] == "1970-01-01T00:00:00Z" and payload["windows"] == ["1970-01-01T00:00:00Z"]
    assert "receivers" not in payload


def test_unreadable_metrics_messages_are_counted_and_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=tmp_path)
    agent = AlertAgent(settings, {}, load_rules(settings))
    bad = [b"not json", b"null", b"[1, 2]", b'{"type": "window"}', b'{"type": "closed", "partition": 0}', None]

    class Event:  # what handle_batch reads of a Faust event
        def __init__(self, value: bytes | None) -> None:
            self.message = type("Message", (), {"partition": 0, "value": value})()

    async def run() -> None:
        for value in bad[:3]:
            await agent.handle(0, value or b"", Topic())
        await agent.handle_batch([Event(v) for v in bad[3:]], Topic())  # type: ignore[list-item]

    monkeypatch.setattr("streams.alerts.agent.set_current_event", lambda event: None)  # no Faust event here
    asyncio.run(run())
    assert agent.bad_messages == len(bad)


class Changelog(dict[str, Any]):
    """A table whose writes reach its changelog only at ``flush()``: ``persisted`` is what a restart restores."""

    def __init__(self, restored: dict[str, Any] | None = None) -> None:
        super().__init__(copy.deepcopy(restored or {}))
        self.persisted: dict[str, Any] = copy.deepcopy(restored or {})

    async def flush(self) -> None:
        self.persisted = copy.deepcopy(dict(self))


class RefusingTopic:
    """An alerts topic whose broker answers late, and refuses the record."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def send(self, key: bytes, value: bytes) -> Any:
        refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def answer() -> None:
            await self.release.wait()
            refused.set_exception(RuntimeError("MessageSizeTooLargeError"))

        asyncio.get_running_loop().create_task(answer())
        return refused


def test_the_timer_sends_no_half_handled_state_so_a_failed_batch_fires_again(tmp_path: Path) -> None:
    """The timer's flush used to send the state of a message still being handled (its alert record on its way
    to Kafka) to the changelog. When Kafka then refused the record and the process stopped, the replay met an
    incident already firing and fired nothing: the alert was never sent or delivered."""
    path = tmp_path / "rules.toml"
    path.write_text(RULE.format(url="http://127.0.0.1:9/hook"))
    settings = Settings(alert_rules=path, data_dir=tmp_path / "data")
    part, closed = (json.dumps(m).encode() for m in window_messages())

    async def scenario() -> list[bytes]:
        table = Changelog()
        agent = AlertAgent(settings, table, load_rules(settings))
        await agent.handle(0, part, Topic())
        refusing = RefusingTopic()
        handling = asyncio.create_task(agent.handle(0, closed, refusing))  # fires; the record waits on Kafka
        while not agent.alerts:
            await asyncio.sleep(0.01)
        await agent.tick()  # the 1 s timer, meanwhile
        refusing.release.set()
        with pytest.raises(RuntimeError, match="MessageSizeTooLargeError"):
            await handling  # the batch fails: the process stops, the message is not acked
        restarted = AlertAgent(settings, Changelog(table.persisted), load_rules(settings))
        topic = Topic()
        await restarted.handle(0, closed, topic)  # the replay after the restart
        return topic.sent

    sent = asyncio.run(scenario())
    assert [json.loads(v)["state"] for v in sent] == ["firing"]
