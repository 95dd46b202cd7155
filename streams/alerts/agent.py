"""The alerting agent: a Faust agent over the metrics topic that completes windows, runs the rules and delivers.

Per message (:class:`streams.alerts.evaluator.Evaluator` decides what it completes and fires):

1. complete windows are written to the ``windows`` dataset (one file per window and app: a replay rewrites it);
2. each state change is written to the ``alerts`` dataset, sent to the alerts topic (``llm.alerts``, keyed by
   ``alert_id``) and put in the *outbox* (``o|<idempotency key>`` in the agent's table);
3. the table's changes (the evaluator's state and the outbox) are sent to its changelog, once per batch of
   messages (at most 500 or half a second); only then are the messages acked;
4. the outbox entries go to the webhook dispatcher (:mod:`streams.alerts.webhooks`), which retries each receiver on
   its own; an entry leaves the outbox once every receiver has it or has given up. A crash before that leaves it
   in the restored table, and it is delivered again with the same idempotency key (``<alert_id>:<state>``).

A slow receiver delays nothing but its own deliveries: the dispatcher runs beside the agent. The rules file is read
again when it changes; a file that does not validate is logged and the running rules stay.

Usage (in a Faust app; ``streams.worker.app`` installs it unless ``EVALSTREAM_ALERTS_IN_WORKER=false``, and
``evalstream alerts`` runs it alone)::

    agent = install(app, settings, table("alerting"))
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import asdict
from datetime import UTC
from pathlib import Path
from typing import Any

import faust
from faust.types import EventT, StreamT

from metrics.alert_rules import RulesError, RuleSet, parse_rules
from sinks.alerting import alert_json, utc, write_alert, write_deliveries, write_windows
from streams.alerts.evaluator import Evaluator, Output
from streams.alerts.webhooks import DeliveryRecord, WebhookDispatcher
from streams.fail_stop import exit_after_failed_batch
from streams.faust_ext.batching import ack_events
from streams.faust_ext.current_event import set_current_event
from streams.faust_ext.own_offsets import OwnedOffsets
from streams.faust_ext.stall import StallDetector
from streams.settings import Settings

log = logging.getLogger("evalstream.alerts")


def load_rules(settings: Settings) -> RuleSet:
    """The rules file of the settings (an empty set without one); raises RulesError naming the field."""
    if settings.alert_rules is None:
        return RuleSet(base_window_s=settings.window_s)
    try:
        text = Path(settings.alert_rules).read_text("utf-8")
    except OSError as exc:
        raise RulesError(f"EVALSTREAM_ALERT_RULES: cannot read {settings.alert_rules}: {exc}") from exc
    try:
        return parse_rules(text, base_window_s=settings.window_s)
    except RulesError as exc:
        raise RulesError(f"{settings.alert_rules}: {exc}") from exc


def webhook_payload(record: dict[str, Any]) -> dict[str, Any]:
    """An alert record as the JSON a receiver gets (ISO times; the Slack ``text`` is added by the dispatcher)."""
    payload = {k: v for k, v in record.items() if k != "receivers"}
    for name in ("window_start", "window_end", "changed_at", "detected_at"):
        if payload.get(name) is not None:
            payload[name] = utc(payload[name]).isoformat() + "Z"
    payload["windows"] = [utc(s).isoformat() + "Z" for s in record.get("windows") or ()]
    return payload


class AlertAgent:
    """The agent's state and its side of the deliveries (see the module docstring)."""

    def __init__(self, settings: Settings, table: MutableMapping[str, Any], rules: RuleSet) -> None:
        self.settings = settings
        self.table = table
        self.evaluator = Evaluator(table, rules, settings.window_s)
        self.dispatcher = WebhookDispatcher(rules.receivers, on_record=self._record)
        self.delivery_log: list[dict[str, Any]] = []
        self.submitted: set[str] = set()  # outbox keys handed to the dispatcher by this process
        self._outbox: set[str] | None = None  # outbox keys (found in the table once per assignment)
        self.alerts = 0
        self.bad_messages = 0  # metrics messages that could not be read (logged with the reason)
        self.stalls = StallDetector(settings.stall_after_s, settings.metrics_topic)  # fed by the topic's offsets
        self._last_report = time.monotonic()
        self._rules_mtime = self._mtime()
        # messages being handled, not yet flushed: the timer must not send their half-done state to the changelog
        self._handling = 0
        # told of each alert state change and delivery attempt (the worker's Prometheus metrics)
        self.on_alert: list[Callable[[dict[str, Any]], None]] = []
        self.on_delivery: list[Callable[[DeliveryRecord], None]] = []

    def _mtime(self) -> float | None:
        try:
            return Path(self.settings.alert_rules).stat().st_mtime if self.settings.alert_rules else None
        except OSError:
            return None

    def _record(self, record: DeliveryRecord) -> None:
        row = asdict(record)
        at = row.pop("at")
        row["attempted_at"] = at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at
        self.delivery_log.append(row)
        for observe in self.on_delivery:
            observe(record)

    async def handle(self, q: int, value: bytes, alerts_topic: Any) -> None:
        """One metrics message (steps 1 to 3 of the module docstring; the caller acks it after)."""
        self._handling += 1
        try:
            out = self._evaluate(q, value)
            if out is not None:
                await self._store(q, out, alerts_topic)
            await self.flush()
        finally:
            self._handling -= 1
        if out is not None and out.alerts:
            self.deliver_outbox()

    async def handle_batch(self, events: Sequence[EventT], alerts_topic: Any) -> None:
        """Several metrics messages in order, their state sent to the changelog once (the caller acks them after):
        a backfill's windows are evaluated at the pace of the batches, not of one flush per message."""
        fired = False
        self._handling += 1
        try:
            for event in events:
                set_current_event(event)  # the table writes of this message go to its partition's changelog
                out = self._evaluate(event.message.partition, event.message.value)
                if out is not None:
                    await self._store(event.message.partition, out, alerts_topic)
                    fired = fired or bool(out.alerts)
            await self.flush()
        finally:
            self._handling -= 1
        if fired:
            self.deliver_outbox()

    def _evaluate(self, q: int, value: bytes | None) -> Output | None:
        try:
            return self.evaluator.on_message(q, json.loads(value or b"null"))
        except (ValueError, KeyError, TypeError) as exc:  # never crash on a message: say what it was, count it
            self.bad_messages += 1
            log.error("metrics message on partition %d skipped: %s: %s", q, type(exc).__name__, exc)
            return None

    async def _store(self, q: int, out: Output, alerts_topic: Any) -> None:
        """Steps 1 and 2 for one message's output (the flush and the hand-over to the dispatcher come after)."""
        data_dir = self.settings.store
        for window in out.windows:
            await asyncio.to_thread(write_windows, data_dir, window.start, window.app, window.rows)
        sends = []
        for record in out.alerts:
            await asyncio.to_thread(write_alert, data_dir, record)
            sends.append(await alerts_topic.send(key=record["alert_id"].encode(), value=alert_json(record)))
            key = f"o|{record['alert_id']}:{record['state']}"
            self.table[key] = {"q": q, "record": record}
            self._keys().add(key)
            self.alerts += 1
            for observe in self.on_alert:
                observe(record)
            log.warning("alert %s %s: rule %s, group %s, value %s", record["state"], record["alert_id"],
                        record["rule"], record["group"], record["value"])  # fmt: skip
        await asyncio.gather(*sends)

    async def flush(self) -> None:
        flush = getattr(self.table, "flush", None)
        if flush is not None:
            await flush()

    def reset(self) -> None:
        """Forget the in-memory indexes (call on partition assignment; they are rebuilt from the table)."""
        self.evaluator.reset()
        self._outbox = None

    def _keys(self) -> set[str]:
        if self._outbox is None:
            self._outbox = {k for k in list(self.table.keys()) if isinstance(k, str) and k.startswith("o|")}
        return self._outbox

    def deliver_outbox(self) -> None:
        """Hand every outbox entry not yet handed over (after a restart: all of them) to the dispatcher."""
        for key in sorted(self._keys() - self.submitted):
            value = self.table.get(key)
            if value is None:  # its partition went to another worker
                self._keys().discard(key)
                continue
            self.submitted.add(key)
            record = value["record"]
            self.dispatcher.submit(
                webhook_payload(record), key[2:], receivers=record.get("receivers"),
                on_done=functools.partial(self._delivered, key, int(value["q"])),
            )  # fmt: skip

    def _delivered(self, key: str, q: int) -> None:
        deleter = getattr(self.table, "del_at", None)
        if deleter is not None:
            deleter(key, q)
        else:
            self.table.pop(key, None)
        self.submitted.discard(key)
        self._keys().discard(key)

    async def tick(self) -> None:
        """From a timer: send the outbox's deletions, log the delivery attempts, resume the outbox, reload rules.

        Not while a batch is handled (its writes wait on files and Kafka): flushing then would send part of the
        batch's state to the changelog before its messages are acked. Had the batch failed or the process died,
        the replay would then meet an incident already firing and fire nothing: an alert stored but never sent
        or delivered (seen when the alerts topic refused the record). The batch's own flush sends all of it."""
        if self._handling:
            return
        await self.flush()
        rows, self.delivery_log = self.delivery_log, []
        if rows:
            await asyncio.to_thread(write_deliveries, self.settings.store, rows)
        self.deliver_outbox()
        self.reload_rules()
        if time.monotonic() - self._last_report >= 30:
            self._last_report = time.monotonic()
            log.info("evalstream alerting: alerts %d, outbox %d, deliveries pending %d, stale window parts %d, "
                     "unreadable messages %d, stalled partitions %d", self.alerts, len(self._keys()),
                     self.dispatcher.pending, self.evaluator.stale_parts, self.bad_messages,
                     len(self.stalls.stalled))  # fmt: skip

    def reload_rules(self) -> None:
        mtime = self._mtime()
        if mtime == self._rules_mtime:
            return
        self._rules_mtime = mtime
        try:
            rules = load_rules(self.settings)
        except RulesError as exc:
            log.error("the alert rules file changed but is invalid; the running rules stay: %s", exc)
            return
        self.evaluator.rules = rules
        self.dispatcher.replace_receivers(rules.receivers)
        log.info("alert rules reloaded: %d rules, %d receivers", len(rules.rules), len(rules.receivers))


def install(
    app: faust.App,
    settings: Settings,
    table: MutableMapping[str, Any],
    rules: RuleSet | None = None,
    process: str = "worker",
) -> AlertAgent:
    """Add the alerting agent and its timer to ``app`` (``rules``: default the settings' file); raises RulesError
    for an invalid rules file. A batch that fails outside the per-message guards stops the process (``process``
    names it in the log) with exit status 70 (:mod:`streams.fail_stop`)."""
    agent = AlertAgent(settings, table, rules if rules is not None else load_rules(settings))
    source = app.topic(settings.metrics_topic, key_serializer="raw", value_serializer="raw")
    # this agent, not Faust, commits the metrics topic's offsets: Faust drops records at rebalances
    owned = OwnedOffsets(app, settings.metrics_topic, settings.commit_interval_s, stalls=agent.stalls)
    owned.install()
    alerts_topic = app.topic(settings.alerts_topic, key_serializer="raw", value_serializer="raw")

    @app.on_partitions_assigned.connect  # type: ignore[untyped-decorator,arg-type]
    async def _on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        agent.reset()

    @app.task  # type: ignore[untyped-decorator]
    async def _start_dispatcher() -> None:
        await agent.dispatcher.start()

    @app.agent(source, name="alerts")  # type: ignore[untyped-decorator]
    async def alerts(stream: StreamT) -> None:
        # acked only once handle_batch() has flushed their state (an error leaves them unacked: replayed)
        try:
            async for events in owned.batches(stream, 500, 0.5):
                await agent.handle_batch(events, alerts_topic)
                await owned.durable(events)
                await ack_events(stream, events)
        except Exception as exc:  # Kafka refused the alert record, a bug: exit, the restart replays the batch
            exit_after_failed_batch(exc, process)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def _tick() -> None:
        await agent.tick()

    return agent
