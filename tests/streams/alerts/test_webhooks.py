"""Alert webhooks against real receivers: aiohttp servers on 127.0.0.1 in the test's own event loop, which record what
reached them and answer from a script (statuses, Retry-After, hanging). Signatures, idempotency keys, retries and
what is not retried, timeouts, one receiver hanging while another is served, on_done, reloads, and the Slack line."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import pytest
from aiohttp import web

from streams.alerts.webhooks import (
    SIGNATURE_HEADER,
    USER_AGENT,
    DeliveryRecord,
    WebhookDispatcher,
    alert_text,
    sign,
    verify,
)

TEXT = "[FIRING critical] thumbs-up-drop · app=chat route=answer · mean thumbs_up 0.21 < 0.4 (window 10:05–10:10 UTC)"


@dataclass(frozen=True)
class Rx:
    """A receiver as the rules file gives it (frozen, as ``metrics.alert_rules.Receiver`` is)."""

    name: str
    url: str
    secret: str | None = None
    timeout_s: float = 2.0
    max_attempts: int = 3


@dataclass
class Hit:
    at: float  # the loop's clock when the request arrived
    headers: Mapping[str, str]
    body: bytes

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]


@dataclass
class Loopback:
    """A webhook receiver on 127.0.0.1: answers each POST with the next scripted status (or (status, headers)),
    200 once the script is spent, after hanging ``hang_s`` seconds."""

    answers: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    hang_s: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(Hit(asyncio.get_running_loop().time(), request.headers.copy(), await request.read()))
        await asyncio.sleep(self.hang_s)
        answer = self.answers.pop(0) if self.answers else 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else f"nope {status}")

    async def __aenter__(self) -> Loopback:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        # handler_cancellation: a hanging handler ends when the dispatcher gives up on it, so teardown is quick
        self.runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 15))  # a hang fails the test rather than stalling the run


async def eventually(condition: Callable[[], bool], limit_s: float = 5.0) -> bool:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def alert(i: int = 1, state: str = "firing", **extra: Any) -> dict[str, Any]:
    return {
        "alert_id": f"a{i}", "state": state, "rule": "thumbs-up-drop", "severity": "critical",
        "group": {"app": "chat", "route": "answer"}, "value": 0.21, "threshold": 0.4, "comparator": "<",
        "aggregation": "mean", "metric": "thumbs_up", "window_start": "2026-11-30T10:05:00Z",
        "window_end": "2026-11-30T10:10:00Z", "description": "Users stopped liking the answers", **extra,
    }  # fmt: skip


def test_a_delivery_is_signed_keyed_and_readable_by_slack() -> None:
    records: list[DeliveryRecord] = []
    done: list[str] = []

    async def scenario() -> None:
        async with Loopback() as ops, Loopback() as slack:
            receivers = [Rx("ops", ops.url, secret="s3cret"), Rx("slack", slack.url)]
            dispatcher = WebhookDispatcher(receivers, records.append, backoff_s=0.01)
            await dispatcher.start()
            dispatcher.submit(alert(), "a1:firing", on_done=lambda: done.append("a1:firing"))
            dispatcher.submit(alert(2, text="their own words"), "a2:firing", receivers=["slack"])
            assert await dispatcher.drain(timeout=5)
            await dispatcher.close()
        (signed,) = ops.hits
        assert verify("s3cret", signed.headers[SIGNATURE_HEADER], signed.body)
        assert not verify("not-the-secret", signed.headers[SIGNATURE_HEADER], signed.body)
        assert signed.key == "a1:firing"
        assert signed.headers["Content-Type"] == "application/json" and signed.headers["User-Agent"] == USER_AGENT
        sent = json.loads(signed.body)
        # Slack reads < as markup, so the line goes out with the entity Slack asks for
        assert sent == {**alert(), "text": TEXT.replace("<", "&lt;")}
        assert signed.body == json.dumps(sent, separators=(",", ":"), sort_keys=True).encode()
        unsigned, own_text = slack.hits
        assert SIGNATURE_HEADER not in unsigned.headers and unsigned.body == signed.body
        assert json.loads(own_text.body)["text"] == "their own words" and own_text.key == "a2:firing"

    run(scenario)
    assert done == ["a1:firing"]
    assert len(records) == 3 and all(r.delivered and r.final and r.attempt == 1 for r in records)
    first = next(r for r in records if r.receiver == "ops")
    assert (first.idempotency_key, first.alert_id, first.state, first.status_code, first.error) == (
        "a1:firing", "a1", "firing", 200, None,
    )  # fmt: skip
    assert first.url.endswith("/hook") and first.at.tzinfo == UTC and first.duration_ms >= 0


def test_a_failing_receiver_is_retried_under_the_same_key(caplog: pytest.LogCaptureFixture) -> None:
    records: list[DeliveryRecord] = []

    async def scenario() -> None:
        async with Loopback([500, 500]) as flaky:
            dispatcher = WebhookDispatcher([Rx("flaky", flaky.url, secret="s")], records.append, backoff_s=0.01)
            await dispatcher.start()
            dispatcher.submit(alert(), "a1:firing")
            assert await dispatcher.drain(timeout=5)
            await dispatcher.close()
        assert [hit.key for hit in flaky.hits] == ["a1:firing"] * 3
        assert all(verify("s", hit.headers[SIGNATURE_HEADER], hit.body) for hit in flaky.hits)
        assert len({hit.body for hit in flaky.hits}) == 1

    with caplog.at_level(logging.WARNING, logger="evalstream.alerts"):
        run(scenario)
    assert [(r.attempt, r.status_code, r.delivered, r.final) for r in records] == [
        (1, 500, False, False), (2, 500, False, False), (3, 200, True, True),
    ]  # fmt: skip
    assert records[0].error == "HTTP 500: nope 500" and records[2].error is None
    assert {r.idempotency_key for r in records} == {"a1:firing"}
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]


def test_408_429_and_5xx_are_retried_and_retry_after_is_honoured_up_to_the_cap() -> None:
    records: list[DeliveryRecord] = []

    async def scenario() -> None:
        script: list[int | tuple[int, dict[str, str]]] = [408, (429, {"Retry-After": "1"}), 503]
        async with Loopback(script) as busy, Loopback([(429, {"Retry-After": "3600"})]) as sulky:
            dispatcher = WebhookDispatcher([Rx("busy", busy.url, max_attempts=5)], records.append, backoff_s=0.01)
            capped = WebhookDispatcher([Rx("sulky", sulky.url)], records.append, backoff_s=0.01, max_backoff_s=0.05)
            for d in (dispatcher, capped):
                await d.start()
                d.submit(alert(), "a1:firing")
            assert await dispatcher.drain(timeout=5) and await capped.drain(timeout=5)
            for d in (dispatcher, capped):
                await d.close()
        gaps = [later.at - earlier.at for earlier, later in zip(busy.hits, busy.hits[1:], strict=False)]
        assert len(gaps) == 3 and gaps[1] >= 0.95 and gaps[0] < 0.5 and gaps[2] < 0.5  # only the 429 said 1 s
        assert len(sulky.hits) == 2 and sulky.hits[1].at - sulky.hits[0].at < 0.5  # an hour, capped at 0.05 s

    run(scenario)
    busy = [r for r in records if r.receiver == "busy"]
    assert [(r.status_code, r.delivered, r.final) for r in busy] == [
        (408, False, False), (429, False, False), (503, False, False), (200, True, True),
    ]  # fmt: skip


def test_other_4xx_are_final_at_once(caplog: pytest.LogCaptureFixture) -> None:
    records: list[DeliveryRecord] = []
    done: list[bool] = []

    async def scenario() -> None:
        async with Loopback([400]) as strict:
            dispatcher = WebhookDispatcher([Rx("strict", strict.url)], records.append, backoff_s=0.01)
            await dispatcher.start()
            dispatcher.submit(alert(), "a1:firing", on_done=lambda: done.append(True))
            assert await dispatcher.drain(timeout=5)
            await dispatcher.close()
        assert len(strict.hits) == 1

    with caplog.at_level(logging.WARNING, logger="evalstream.alerts"):
        run(scenario)
    (record,) = records
    assert (record.attempt, record.status_code, record.delivered, record.final) == (1, 400, False, True)
    assert record.error == "HTTP 400: nope 400" and done == [True]  # given up counts as finished
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"] and "gave up after 1" in caplog.text


def test_a_refused_connection_is_retried_then_given_up() -> None:
    records: list[DeliveryRecord] = []
    done: list[bool] = []

    async def scenario() -> None:
        with socket.socket() as bound:  # bound but not listening: connections are refused, and no one takes the port
            bound.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{bound.getsockname()[1]}/hook"
            dispatcher = WebhookDispatcher([Rx("gone", url, max_attempts=3)], records.append, backoff_s=0.01)
            await dispatcher.start()
            dispatcher.submit(alert(), "a1:firing", on_done=lambda: done.append(True))
            assert await dispatcher.drain(timeout=5) and dispatcher.pending == 0
            await dispatcher.close()

    run(scenario)
    assert [(r.attempt, r.status_code, r.delivered, r.final) for r in records] == [
        (1, None, False, False), (2, None, False, False), (3, None, False, True),
    ]  # fmt: skip
    assert all("ClientConnectorError" in (r.error or "") for r in records) and done == [True]


def test_an_attempt_ends_at_the_receivers_timeout() -> None:
    records: list[DeliveryRecord] = []

    async def scenario() -> None:
        async with Loopback(hang_s=30) as stuck:
            receiver = Rx("stuck", stuck.url, timeout_s=0.1, max_attempts=2)
            dispatcher = WebhookDispatcher([receiver], records.append, backoff_s=0.01)
            await dispatcher.start()
            dispatcher.submit(alert(), "a1:firing")
            assert await dispatcher.drain(timeout=5)
            await dispatcher.close()
        assert len(stuck.hits) == 2

    run(scenario)
    assert [(r.attempt, r.delivered, r.final) for r in records] == [(1, False, False), (2, False, True)]
    assert all(r.error == "TimeoutError: no answer within 0.1 s" and 90 <= r.duration_ms < 1000 for r in records)


def test_a_hanging_receiver_holds_up_neither_the_others_nor_the_caller() -> None:
    records: list[DeliveryRecord] = []

    async def scenario() -> None:
        async with Loopback(hang_s=30) as stuck, Loopback() as healthy:
            receivers = [Rx("stuck", stuck.url, timeout_s=2.0, max_attempts=3), Rx("healthy", healthy.url)]
            dispatcher = WebhookDispatcher(receivers, records.append, backoff_s=0.01)
            await dispatcher.start()
            began = time.perf_counter()
            for i in range(20):
                dispatcher.submit(alert(i), f"a{i}:firing")
            submitting = time.perf_counter() - began
            assert stuck.hits == [] and healthy.hits == []  # submit only queued: nothing was sent yet
            assert await eventually(lambda: sum(r.receiver == "healthy" for r in records) == 20)
            took = time.perf_counter() - began
            # the stuck receiver's first timeout alone is 2 s; all of them, 20 alerts x 3 attempts x 2 s
            assert took < 1.0, took
            assert submitting < 0.1, submitting
            assert [json.loads(hit.body)["alert_id"] for hit in healthy.hits] == [f"a{i}" for i in range(20)]
            assert len(stuck.hits) == 1 and dispatcher.pending == 20
            assert not await dispatcher.drain(timeout=0.05)
            await dispatcher.close()

    run(scenario)
    assert all(r.delivered for r in records) and {r.receiver for r in records} == {"healthy"}


def test_submit_before_start_only_queues() -> None:
    async def scenario() -> None:
        async with Loopback() as receiver:
            dispatcher = WebhookDispatcher([Rx("r", receiver.url)], backoff_s=0.01)
            dispatcher.submit(alert(), "a1:firing")
            await asyncio.sleep(0.05)
            assert receiver.hits == [] and dispatcher.pending == 1
            await dispatcher.start()
            assert await dispatcher.drain(timeout=5)
            await dispatcher.close()
            assert [hit.key for hit in receiver.hits] == ["a1:firing"]
            with pytest.raises(RuntimeError, match="closed"):
                dispatcher.submit(alert(), "a2:firing")

    run(scenario)


def test_on_done_fires_once_when_every_targeted_receiver_is_finished(caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    def broken() -> None:
        raise ZeroDivisionError("the caller's bug")

    async def scenario() -> None:
        async with Loopback() as fast, Loopback(hang_s=0.3) as slow:
            records: list[DeliveryRecord] = []
            dispatcher = WebhookDispatcher([Rx("fast", fast.url), Rx("slow", slow.url)], records.append)
            await dispatcher.start()
            dispatcher.submit(alert(1), "k1", on_done=lambda: done.append("k1"))
            assert await eventually(lambda: any(r.receiver == "fast" for r in records))
            assert done == []  # the slow one is still at it
            assert await dispatcher.drain(timeout=5)
            assert done == ["k1"]
            dispatcher.submit(alert(2), "k2", receivers=["fast"], on_done=lambda: done.append("k2"))
            assert await dispatcher.drain(timeout=5) and done == ["k1", "k2"]
            assert [hit.key for hit in slow.hits] == ["k1"] and [hit.key for hit in fast.hits] == ["k1", "k2"]
            dispatcher.submit(alert(3), "k3", receivers=[], on_done=lambda: done.append("k3"))
            dispatcher.submit(alert(4), "k4", receivers=["nobody"], on_done=lambda: done.append("k4"))
            assert done == ["k1", "k2", "k3", "k4"]  # nothing to wait for: done before submit returned
            dispatcher.submit(alert(5), "k5", receivers="fast", on_done=broken)  # one name, not a list; a bad callback
            assert await dispatcher.drain(timeout=5) and fast.hits[-1].key == "k5"
            await dispatcher.close()

    with caplog.at_level(logging.WARNING, logger="evalstream.alerts"):
        run(scenario)
    assert "no receiver named nobody" in caplog.text and "ZeroDivisionError" in caplog.text


def test_replace_receivers_adds_updates_and_drains_the_removed() -> None:
    done: list[str] = []

    async def scenario() -> None:
        async with Loopback(hang_s=0.1) as a, Loopback() as b_old, Loopback() as b_new, Loopback() as c:
            dispatcher = WebhookDispatcher([Rx("a", a.url), Rx("b", b_old.url)], backoff_s=0.01)
            await dispatcher.start()
            dispatcher.submit(alert(1), "k1")
            dispatcher.submit(alert(2), "k2")
            dispatcher.replace_receivers([Rx("b", b_new.url), Rx("c", c.url)])
            dispatcher.submit(alert(3), "k3")
            assert await dispatcher.drain(timeout=5)
            assert [hit.key for hit in a.hits] == ["k1", "k2"]  # removed, but it delivered what it held
            assert b_old.hits == [] and [hit.key for hit in b_new.hits] == ["k1", "k2", "k3"]  # the new address
            assert [hit.key for hit in c.hits] == ["k3"]
            names = lambda: {t.get_name() for t in asyncio.all_tasks()}  # noqa: E731
            assert await eventually(lambda: "evalstream-alerts:a" not in names())
            assert {"evalstream-alerts:b", "evalstream-alerts:c"} <= names()
            dispatcher.submit(alert(4), "k4", receivers=["a"], on_done=lambda: done.append("k4"))
            assert done == ["k4"] and dispatcher.pending == 0
            with pytest.raises(ValueError, match="share a name"):
                dispatcher.replace_receivers([Rx("d", c.url), Rx("d", b_new.url)])
            await dispatcher.close()

    run(scenario)


def test_verify_refuses_wrong_secrets_tampering_replays_and_garbage() -> None:
    body, t = b'{"alert_id":"a1","state":"firing"}', 1_764_496_800
    digest = hmac.new(b"s3cret", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    header = sign("s3cret", body, t)
    assert header == f"t={t},v1={digest}"
    assert verify("s3cret", header, body, now=t + 299) and verify("s3cret", header, body, now=t - 299)
    assert verify("s3cret", f"t={t}, v0=old, v1={'0' * 64}, v1={digest}", body, now=t)  # a rotated secret
    assert not verify("s3cret!", header, body, now=t)
    assert not verify("s3cret", header, body.replace(b"firing", b"resolved"), now=t)
    assert not verify("s3cret", header, body, now=t + 301)
    assert not verify("s3cret", header, body, tolerance_s=10, now=t + 11)
    assert not verify("s3cret", header, body)  # now: years after t
    garbage = [
        "", "garbage", ",", "t=,v1=", f"v1={digest}", f"t={t}", f"t=abc,v1={digest}", f"t={t},t={t},v1={digest}",
        f"t=-{t},v1={digest}", f"t={t}.0,v1={digest}", f"t=١٢٣,v1={digest}", f"t={t};v1={digest}", f"t={t},v1=é",
        f"t={t},v1={digest.upper()}", f"t={t},v1={digest},junk",
    ]  # fmt: skip
    assert [h for h in garbage if verify("s3cret", h, body, now=t)] == []


def test_alert_text_copes_with_whatever_fields_there_are() -> None:
    assert alert_text(alert()) == TEXT
    assert alert_text(alert(state="resolved", value=0.52)) == (
        "[RESOLVED] thumbs-up-drop · app=chat route=answer · mean thumbs_up 0.52, alert when < 0.4 "
        "(window 10:05–10:10 UTC)"
    )
    assert alert_text({}) == "[ALERT] alert"
    sparse = {
        "state": "firing", "alert_id": "a9", "rule": None, "severity": None, "group": None, "value": None,
        "threshold": None, "comparator": None, "aggregation": None, "metric": "latency_ms", "window_start": None,
        "window_end": "not a time",
    }  # fmt: skip
    assert alert_text(sparse) == "[FIRING] a9 · latency_ms (window ?–not a time UTC)"
    slow = alert(rule="slow\nanswers", group={}, aggregation="p95", metric="latency_ms", value=1532.7,
                 comparator=">", threshold=1000, window_start="2026-11-30T12:05:30+02:00")  # fmt: skip
    assert alert_text(slow) == "[FIRING critical] slow answers · p95 latency_ms 1533 > 1000 (window 10:05:30–10:10 UTC)"
    assert alert_text({"state": "firing", "value": None, "comparator": "<", "threshold": 0.4}) == (
        "[FIRING] alert · alert when < 0.4"
    )
