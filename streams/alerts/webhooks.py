"""Delivering alert state changes (firing, resolved) to webhook receivers, so that one slow or broken receiver never
holds up the others nor the evaluator that raised the alert.

- One JSON ``POST`` per state change and receiver: the caller's payload (compact, sorted keys) plus a Slack-compatible
  ``text`` line (:func:`alert_text`) when it has none, so a Slack incoming webhook just works.
- ``Idempotency-Key: <key>`` (the caller's, e.g. ``"<alert_id>:<state>"``) on every attempt, so a receiver drops
  what a retry or a restart sends again; ``X-Evalstream-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret,
  "<t>.<body>")>`` when the receiver has a secret (as Stripe signs), checked by :func:`verify`, whose timestamp
  tolerance refuses replays.
- Each receiver has its own queue and worker: its deliveries keep their submit order, and when it hangs it waits
  alone. An attempt ends after the receiver's ``timeout_s``; connection errors, timeouts, 408, 429 and 5xx are tried
  again up to ``max_attempts`` times (exponential backoff with full jitter, or the ``Retry-After`` given, capped);
  other answers (4xx; 3xx too: redirects are not followed, so a signed body goes nowhere else) are final failures.
- Every attempt is a :class:`DeliveryRecord` for the caller's delivery log (``on_record``). Crash safety is the
  caller's: it acknowledges the alert's source in ``on_done`` (every targeted receiver finished with the key) and,
  after a restart, submits unfinished alerts again under the same key.

Example (a receiver checks the signature; the Slack line of a firing alert)::

    >>> body = b'{"alert_id":"a1","state":"firing"}'
    >>> header = sign("s3cret", body, timestamp=1764496800)
    >>> header
    't=1764496800,v1=...'
    >>> verify("s3cret", header, body, now=1764496830), verify("s3cret", header, body, now=1764496800 + 3600)
    (True, False)
    >>> alert_text({"state": "firing", "severity": "critical", "rule": "thumbs-up-drop",
    ...             "group": {"app": "chat", "route": "answer"}, "aggregation": "mean", "metric": "thumbs_up",
    ...             "value": 0.21, "comparator": "<", "threshold": 0.4,
    ...             "window_start": "2026-11-30T10:05:00Z", "window_end": "2026-11-30T10:10:00Z"})
    '[FIRING critical] thumbs-up-drop · app=chat route=answer · mean thumbs_up 0.21 < 0.4 (window 10:05–10:10 UTC)'

Usage (in the event loop's thread: ``submit`` and ``replace_receivers`` are not thread-safe)::

    dispatcher = WebhookDispatcher(rules.receivers, on_record=delivery_log.append)
    await dispatcher.start()
    dispatcher.submit(alert, f"{alert['alert_id']}:{alert['state']}", receivers=rule.receivers, on_done=ack)
    await dispatcher.drain(timeout=10.0)
    await dispatcher.close()
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

log = logging.getLogger("evalstream.alerts")

SIGNATURE_HEADER = "X-Evalstream-Signature"
USER_AGENT = "evalstream-alerts/1"
RETRYABLE = frozenset({408, 429})  # and every 5xx


class ReceiverLike(Protocol):
    """What the dispatcher reads of a receiver (read-only, so frozen dataclasses fit: ``alert_rules.Receiver``)."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def secret(self) -> str | None: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...


@dataclass(frozen=True)
class DeliveryRecord:
    """One attempt to deliver one alert to one receiver (a row of ``alert_deliveries``); ``final`` on the last
    attempt for the key and receiver, delivered or given up. ``at`` is when the attempt started."""

    idempotency_key: str
    alert_id: str
    state: str
    receiver: str
    url: str
    attempt: int
    status_code: int | None
    error: str | None
    delivered: bool
    final: bool
    at: datetime
    duration_ms: float


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Evalstream-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300, now: float | None = None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance_s`` of ``now`` (either side).

    Any of several ``v1`` values may match (a sender rotating its secret signs with both); unknown fields are
    ignored; a malformed header is simply false."""
    timestamp: int | None = None
    given: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not (value.isascii() and value.isdigit()):
                return False
            timestamp = int(value)
        elif key == "v1":
            given.append(value.encode())
    if timestamp is None or not given or abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2].encode()
    return any([hmac.compare_digest(expected, candidate) for candidate in given])  # all compared: no early exit


def alert_text(alert: Mapping[str, Any]) -> str:
    """A one-line human summary of an alert (Slack's ``text``); any field may be missing or None."""
    state = str(alert.get("state") or "alert").upper()
    severity = alert.get("severity")
    head = f"[{state} {severity}]" if severity and state == "FIRING" else f"[{state}]"
    parts = [f"{head} {alert.get('rule') or alert.get('alert_id') or 'alert'}"]
    group = alert.get("group")
    if isinstance(group, Mapping) and group:
        parts.append(" ".join(f"{label}={value}" for label, value in group.items()))
    start, end = alert.get("window_start"), alert.get("window_end")
    window = f"(window {_clock(start)}–{_clock(end)} UTC)" if start or end else ""
    tail = " ".join(x for x in (_condition(alert, state == "FIRING"), window) if x)
    if tail:
        parts.append(tail)
    return " ".join(" · ".join(parts).split())  # one line, whatever newlines the fields hold


def _condition(alert: Mapping[str, Any], firing: bool) -> str:
    shown = " ".join(str(alert[k]) for k in ("aggregation", "metric") if alert.get(k) not in (None, ""))
    value, comparator, threshold = alert.get("value"), alert.get("comparator"), alert.get("threshold")
    if value is not None:
        shown = f"{shown} {_number(value)}"
    if comparator and threshold is not None:
        rule = f"{comparator} {_number(threshold)}"
        # "0.52 < 0.4" would be false once resolved, so the condition is named rather than asserted
        shown = f"{shown} {rule}" if firing and value is not None else f"{shown}, alert when {rule}"
    return shown.strip(" ,")


def _number(x: Any) -> str:
    if isinstance(x, float) and math.isfinite(x):
        return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.4g}"
    return str(x)


def _clock(value: Any) -> str:
    if not value:
        return "?"
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return moment.strftime("%H:%M:%S" if moment.second else "%H:%M")


def _body(payload: Mapping[str, Any]) -> bytes:
    data = dict(payload)
    if "text" not in data:
        # Slack reads &, < and > as markup (links, mentions), so they are sent as the entities it asks for
        text = alert_text(payload)
        data["text"] = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header; None when absent or not seconds (HTTP dates are not read)."""
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(eq=False)
class _Job:
    """One submitted key, queued once per targeted receiver; ``remaining``: receivers not finished with it."""

    body: bytes
    key: str
    alert_id: str
    state: str
    remaining: int
    on_done: Callable[[], None] | None


@dataclass(eq=False)
class _Lane:
    """One receiver's queue (None ends its worker) and worker."""

    receiver: ReceiverLike
    queue: asyncio.Queue[_Job | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class WebhookDispatcher:
    """Posts alerts to receivers, each through its own queue and worker; see the module's docstring.

    ``submit`` only queues (it may come before ``start``; nothing is sent until then). ``close`` stops at once:
    what is unfinished is neither recorded as final nor reported to ``on_done``, and the caller sends it again."""

    def __init__(
        self, receivers: Sequence[ReceiverLike], on_record: Callable[[DeliveryRecord], None] | None = None, *,
        backoff_s: float = 0.5, max_backoff_s: float = 30.0, rng: random.Random | None = None,
    ) -> None:  # fmt: skip
        self.on_record = on_record
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.rng = rng or random.Random()
        self._lanes: dict[str, _Lane] = {}
        self._retiring: set[_Lane] = set()  # removed receivers whose queues are still draining
        self._session: aiohttp.ClientSession | None = None
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self.replace_receivers(receivers)

    async def start(self) -> None:
        """Open the HTTP session and start the workers (a second call does nothing)."""
        if self._closed:
            raise RuntimeError("the webhook dispatcher is closed")
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # a worker holds one connection at most: no pool to queue in
            timeout=aiohttp.ClientTimeout(total=None),  # each attempt runs under its receiver's own timeout
            headers={"User-Agent": USER_AGENT},
        )
        for lane in [*self._lanes.values(), *self._retiring]:
            self._spawn(lane)

    def submit(
        self, payload: Mapping[str, Any], idempotency_key: str, receivers: Collection[str] | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """Queue ``payload`` for ``receivers`` (names; None: all) and return at once.

        ``on_done()`` runs once every targeted receiver has delivered it or given up (at once, before this returns,
        when none is targeted). An unknown name is logged and skipped. A payload that is not JSON raises here."""
        if self._closed:
            raise RuntimeError("the webhook dispatcher is closed")
        body = _body(payload)
        if isinstance(receivers, str):  # one name, not its letters
            receivers = [receivers]
        names = list(self._lanes) if receivers is None else list(dict.fromkeys(receivers))
        lanes = [self._lanes[name] for name in names if name in self._lanes]
        if len(lanes) < len(names):
            unknown = ", ".join(name for name in names if name not in self._lanes)
            log.warning("alert %s: no receiver named %s; not sent there", idempotency_key, unknown)
        if not lanes:
            _call(on_done)
            return
        alert_id, state = str(payload.get("alert_id") or ""), str(payload.get("state") or "")
        job = _Job(body, idempotency_key, alert_id, state, len(lanes), on_done)
        self._pending += len(lanes)
        self._idle.clear()
        for lane in lanes:
            lane.queue.put_nowait(job)

    def replace_receivers(self, receivers: Sequence[ReceiverLike]) -> None:
        """Switch to a reloaded set of receivers: new names get a queue and worker, kept names take the new settings
        from their next attempt on, removed names deliver what they hold and then stop (a name removed and added
        back before that gets a new queue, not ordered after the old one)."""
        wanted = {receiver.name: receiver for receiver in receivers}
        if len(wanted) < len(receivers):
            raise ValueError(f"two webhook receivers share a name: {[r.name for r in receivers]}")
        for name in self._lanes.keys() - wanted.keys():
            lane = self._lanes.pop(name)
            lane.queue.put_nowait(None)  # behind what it holds
            if lane.task is None or not lane.task.done():
                self._retiring.add(lane)
        for name, receiver in wanted.items():
            if name in self._lanes:
                self._lanes[name].receiver = receiver
            else:
                self._lanes[name] = lane = _Lane(receiver)
                if self._session is not None and not self._closed:
                    self._spawn(lane)

    @property
    def pending(self) -> int:
        """Deliveries (one per key and receiver) not finished yet."""
        return self._pending

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until nothing is pending; False if ``timeout`` seconds passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the workers (cancelling attempts in flight) and close the HTTP session."""
        self._closed = True
        tasks = [lane.task for lane in [*self._lanes.values(), *self._retiring] if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _spawn(self, lane: _Lane) -> None:
        lane.task = asyncio.create_task(self._work(lane), name=f"evalstream-alerts:{lane.receiver.name}")
        lane.task.add_done_callback(lambda _: self._retiring.discard(lane))

    async def _work(self, lane: _Lane) -> None:
        while (job := await lane.queue.get()) is not None:
            try:
                await self._deliver(lane, job)
            except Exception:  # a bug here must not stop the receiver's queue
                log.exception("alert %s to %s: delivery failed unexpectedly", job.key, lane.receiver.name)
            self._finish(job)

    async def _deliver(self, lane: _Lane, job: _Job) -> None:
        for attempt in itertools.count(1):
            receiver = lane.receiver  # a reload may change the address or the secret between attempts
            at, began = datetime.now(UTC), time.perf_counter()
            status, error, retry, retry_after = await self._attempt(receiver, job)
            delivered = error is None
            final = delivered or not retry or attempt >= receiver.max_attempts
            _call(self.on_record, DeliveryRecord(
                job.key, job.alert_id, job.state, receiver.name, receiver.url, attempt, status, error, delivered, final,
                at, (time.perf_counter() - began) * 1000.0,
            ))  # fmt: skip
            if delivered:
                return
            log.warning("alert %s to %s: attempt %d failed: %s", job.key, receiver.name, attempt, error)
            if final:
                log.error("alert %s to %s: gave up after %d attempt(s): %s", job.key, receiver.name, attempt, error)
                return
            await asyncio.sleep(self._delay(attempt, retry_after))

    async def _attempt(self, receiver: ReceiverLike, job: _Job) -> tuple[int | None, str | None, bool, float | None]:
        """One POST: (status code, error or None when delivered, whether to try again, Retry-After seconds)."""
        assert self._session is not None
        headers = {"Content-Type": "application/json", "Idempotency-Key": job.key}
        if receiver.secret:
            headers[SIGNATURE_HEADER] = sign(receiver.secret, job.body, int(time.time()))
        try:
            async with asyncio.timeout(receiver.timeout_s):
                post = self._session.post(receiver.url, data=job.body, headers=headers, allow_redirects=False)
                async with post as response:
                    if 200 <= response.status < 300:
                        return response.status, None, False, None
                    said = (await response.content.read(200)).decode(errors="replace").strip()
        except TimeoutError:
            return None, f"TimeoutError: no answer within {receiver.timeout_s:g} s", True, None
        except aiohttp.InvalidURL as exc:  # will not get better by waiting
            return None, f"InvalidURL: {exc}", False, None
        except (aiohttp.ClientError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}", True, None
        status = response.status
        retry = status in RETRYABLE or status >= 500
        retry_after = _retry_after(response.headers.get("Retry-After")) if retry else None
        return status, f"HTTP {status}: {said}" if said else f"HTTP {status}", retry, retry_after

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        # full jitter: retries of many alerts to one receiver that came back spread out instead of arriving together
        return self.rng.uniform(0.0, min(self.max_backoff_s, self.backoff_s * 2.0 ** min(attempt - 1, 60)))

    def _finish(self, job: _Job) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()
        job.remaining -= 1
        if job.remaining == 0:
            _call(job.on_done)


def _call(callback: Callable[..., None] | None, *args: Any) -> None:
    """Run one of the caller's callbacks: its failure is logged, and stops no delivery."""
    if callback is not None:
        try:
            callback(*args)
        except Exception:
            log.exception("webhook dispatcher callback %r failed", callback)
