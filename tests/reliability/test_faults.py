"""Faults around the worker rather than in it: the broker going away mid-stream, a full disk, an unwritable dataset
folder. The worker is never restarted by the test; once the fault is gone, the data equals a clean run's.

Each test publishes the reliability suite's traffic (:func:`tests.reliability.chaos.build_traffic`: malformed
messages and duplicate event ids included), injects the fault while a worker consumes, removes it and checks:
every valid event once, every malformed message and copy dead-lettered once (in Parquet and on the DLQ topic), and
the scores equal to those of a clean run of the same traffic (:func:`clean_scores`, once for the module).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from fastapi.testclient import TestClient

from api.app import create_app
from sinks.catalog import landed_counts
from streams.local.broker.local import LocalBroker
from streams.local.launch import spawn_cli, stop, wait_for
from streams.sdk.publisher import Publisher
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.app import TABLES
from tests.reliability.chaos import SCORES, Traffic, build_traffic, check_stored_once, rows

pytestmark = pytest.mark.integration

TRAFFIC = build_traffic(3000, seed=21)  # 3,093 messages: 3,048 valid events, 30 malformed, 15 copies
WORKER: dict[str, Any] = {"embed_backend": "off", "flush_max_events": 500, "flush_interval_s": 0.5,
                          "window_idle_s": 3600.0, "topic_partitions": 4}  # fmt: skip
RETRY = re.compile(r"writing Parquet for \S+\[(\d+)\] offsets (\d+)\.\.(\d+) failed; retrying")
THUMBS = "SELECT count(*) FROM scores WHERE metric = 'thumbs_up'"


def _settings(bootstrap: str, data_dir: Path) -> Settings:
    """A run of its own: topics, consumer group and data folder unique to it; topics created."""
    tag = uuid.uuid4().hex[:10]
    run = Settings(bootstrap_servers=bootstrap, events_topic=f"llm.events.{tag}", metrics_topic=f"llm.metrics.{tag}",
                   alerts_topic=f"llm.alerts.{tag}", worker_id=f"evalstream-faults-{tag}", data_dir=data_dir,
                   **WORKER)  # fmt: skip
    ensure_topics(run, tables=TABLES)
    return run


def _publish(run: Settings, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    with Publisher(run.bootstrap_servers, run.events_topic) as pub:
        for key, value in messages:
            pub.publish_raw(value, key)


def _landed(run: Settings) -> int:
    """Messages landed: each one is a row of ``events`` or of ``dlq``."""
    return sum(landed_counts(run.data_dir))


def _committed(run: Settings) -> list[int]:
    """The worker group's committed offset per partition of the events topic (0: none yet)."""
    consumer = Consumer({"bootstrap.servers": run.bootstrap_servers, "group.id": run.worker_id,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        parts = [TopicPartition(run.events_topic, p) for p in range(run.topic_partitions)]
        return [max(0, tp.offset) for tp in consumer.committed(parts, timeout=30)]
    finally:
        consumer.close()


def _check_exactly_once(run: Settings, traffic: Traffic, clean: list[tuple[Any, ...]]) -> None:
    """Every valid event once, every bad message and copy dead-lettered once, the clean run's scores."""
    check_stored_once(run, traffic)
    data = run.data_dir
    assert rows(data, SCORES) == clean


def _finish(run: Settings, worker: subprocess.Popen[bytes], log: Path, traffic: Traffic) -> str:
    """Wait until everything landed and is committed, stop the worker cleanly; its log."""
    wait_for(lambda: landed_counts(run.data_dir) == (len(traffic.valid_ids), traffic.dead_letters) or None,
             300, 1.0, "every event", worker)  # fmt: skip
    wait_for(lambda: sum(_committed(run)) == len(traffic.messages) or None, 120, 1.0, "every offset committed", worker)
    assert stop(worker, 60) in (0, -signal.SIGTERM), log.read_text()[-3000:]
    text = log.read_text()
    assert re.search(r"evalstream counters at shutdown: .*'absent_offsets': 0", text), text[-3000:]
    return text


@pytest.fixture(scope="module")
def clean_scores(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    """The scores of a run without faults (published up front, one worker); checked like the runs with faults."""
    tmp = tmp_path_factory.mktemp("clean")
    run = _settings(kafka, tmp / "data")
    _publish(run, TRAFFIC.messages)
    log = tmp / "worker.log"
    _finish(run, spawn_cli(["worker"], run.to_env(), log), log, TRAFFIC)
    scores = rows(run.data_dir, SCORES)
    _check_exactly_once(run, TRAFFIC, scores)
    assert len(scores) == len(set(scores)) > len(TRAFFIC.valid_ids)
    return scores


# --- 1. the broker goes away -------------------------------------------------------------------------------------


class PacedPublisher(threading.Thread):
    """Publishes ``messages`` in 100 even slices over ``seconds`` as an application does: each message handed to the
    SDK when it comes, never waiting for the broker; one flush at the end. Samples what was delivered when."""

    def __init__(self, run: Settings, messages: list[tuple[bytes | None, bytes | None]], seconds: float) -> None:
        super().__init__(name="publisher", daemon=True)
        self.run_settings, self.messages, self.seconds = run, messages, seconds
        self.published = 0
        self.samples: list[tuple[float, int, int]] = []  # (time, published, delivered)
        self.errors: list[str] = []
        self.start()

    def run(self) -> None:
        try:
            # librdkafka's own log (a line per failed reconnect) off: failures come back as PublishError
            settings, quiet = self.run_settings, {"log_level": 0}
            with Publisher(settings.bootstrap_servers, settings.events_topic, quiet) as pub:
                size, started = -(-len(self.messages) // 100), time.monotonic()
                for n in range(100):
                    for key, value in self.messages[n * size : (n + 1) * size]:
                        pub.publish_raw(value, key)
                        self.published += 1
                    self.samples.append((time.monotonic(), self.published, pub.delivered))
                    time.sleep(max(0.0, started + self.seconds * (n + 1) / 100 - time.monotonic()))
                pub.flush(120)
                self.samples.append((time.monotonic(), self.published, pub.delivered))
        except Exception as exc:  # the test asserts there is none
            self.errors.append(repr(exc))

    def longest_stall(self) -> float:
        """The longest time messages waited while none was delivered."""
        longest, since = 0.0, None
        for (t, _, delivered), (_, published, before) in zip(self.samples[1:], self.samples, strict=False):
            if delivered == before and published > before:
                since = since if since is not None else t
                longest = max(longest, t - since)
            else:
                since = None
        return longest


def _broker_command(pid: int) -> list[str]:
    return [arg.decode() for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]


def _restart(broker: LocalBroker, command: list[str]) -> LocalBroker:
    """The broker started again with its own command line: same ports, same storage (``LocalBroker.start`` would
    format the storage afresh, losing every topic)."""
    with open(Path(broker.data_dir) / "broker.out", "ab") as console:
        proc = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers, "log_level": 0})

    def answers() -> bool | None:
        try:
            return bool(admin.list_topics(timeout=2).brokers) or None
        except KafkaException:
            return None

    wait_for(answers, 120, 0.3, "the restarted broker", proc)
    return dataclasses.replace(broker, pid=proc.pid)


def _ask_api(api: TestClient, data_dir: Path) -> int:
    """``/health`` answers, and the thumbs-up timeseries counts what the scores held around the request."""
    assert api.get("/health").json()["status"] == "ok"
    before = rows(data_dir, THUMBS)[0][0]
    answer = api.get(
        "/v1/metrics/timeseries",
        params={
            "metric": "thumbs_up",
            "window": "1h",
            "since": "2026-11-30T00:00:00Z",
            "until": "2026-12-01T00:00:00Z",
        },
    )
    assert answer.status_code == 200, answer.text
    total = sum(point["count"] for point in answer.json()["data"])
    assert before <= total <= rows(data_dir, THUMBS)[0][0]
    return int(total)


def test_broker_stopped_and_killed_mid_stream(
    kafka: str, tmp_path: Path, clean_scores: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker is stopped cleanly, later SIGKILLed, each time for 10 s plus its restart (on the same port and
    storage), while the publisher keeps publishing and the worker runs. The SDK buffers and delivers everything
    once the broker is back (no PublishError), the worker resumes by itself, the API answers throughout, and
    everything lands exactly once with the clean run's scores.

    The SDK needs no change for this: librdkafka queues what is published while no broker answers and retries it
    until ``message.timeout.ms`` (120 s in :class:`Publisher`) has passed since it was published. An outage
    shorter than that loses nothing; a longer one fails the messages it held, and ``flush()``/``close()`` raise
    PublishError listing them (with ``message.timeout.ms`` at 5 s this test fails so: 930 messages timed out)."""
    outage_s = 10.0
    broker = LocalBroker.start(tmp_path / "kafka")
    command = _broker_command(broker.pid)
    worker = None
    try:
        run = _settings(broker.bootstrap_servers, tmp_path / "data")
        monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(run.data_dir))
        api = TestClient(create_app())
        log = tmp_path / "worker.log"
        worker = spawn_cli(["worker"], run.to_env(), log)
        wait_for(lambda: "[^Worker]: Ready" in log.read_text() or None, 240, 0.5, "the worker", worker)
        publisher = PacedPublisher(run, TRAFFIC.messages, 90)  # the outages begin at 25 % and 55 % of it
        report = []
        for how, published_share in (("SIGTERM", 0.25), ("SIGKILL", 0.55)):
            wait_for(lambda: publisher.published >= published_share * len(TRAFFIC.messages) or None,  # noqa: B023
                     240, 0.2, "the publisher", worker)  # fmt: skip
            wait_for(lambda: _landed(run) > 0 or None, 240, 0.2, "a first batch", worker)
            down = time.monotonic()
            if how == "SIGTERM":
                broker.stop(60)
            else:
                os.killpg(broker.pid, signal.SIGKILL)
                wait_for(lambda: not broker.is_running() or None, 30, 0.1, "the killed broker")  # noqa: B023
            stopped = time.monotonic()
            # what the publisher hands over from now on reaches only the restarted broker
            published = publisher.published
            answered = _ask_api(api, run.data_dir)  # the API reads only Parquet
            time.sleep(max(0.0, stopped + outage_s - time.monotonic()))
            queued = publisher.published - published
            assert queued > 0 and worker.poll() is None
            delivered = publisher.samples[-1][2]  # every delivery before the outage is counted by now
            broker = _restart(broker, command)
            up = time.monotonic()
            wait_for(lambda: publisher.samples[-1][2] > delivered or None, 120, 0.1, "deliveries again")  # noqa: B023
            sdk_s = time.monotonic() - up
            wait_for(lambda: _landed(run) > published or None, 240, 0.2, f"progress after {how}", worker)  # noqa: B023
            report.append(f"{how}: broker unreachable {up - down:.1f} s (stopping it {stopped - down:.1f} s), "
                          f"{queued} messages published meanwhile, API counted {answered} thumbs while down; "
                          f"after the restart the SDK delivered again in {sdk_s:.1f} s, the worker landed messages "
                          f"published during the outage in {time.monotonic() - up:.1f} s")  # fmt: skip
        publisher.join(300)
        assert not publisher.is_alive() and publisher.errors == []
        assert publisher.samples[-1][1:] == (len(TRAFFIC.messages),) * 2  # all published, all delivered
        text = _finish(run, worker, log, TRAFFIC)
        assert _ask_api(api, run.data_dir) == rows(run.data_dir, THUMBS)[0][0] > 0
        print(f"\nbroker faults: {'; '.join(report)}; publisher's longest delivery stall "
              f"{publisher.longest_stall():.1f} s; failed Parquet writes {len(RETRY.findall(text))}")  # fmt: skip
        _check_exactly_once(run, TRAFFIC, clean_scores)
    finally:
        if worker is not None:
            stop(worker, 60)
        broker.stop(60)


# --- 2 and 3. writes that fail --------------------------------------------------------------------------------------


def _failing_writes(
    run: Settings, tmp_path: Path, clean: list[tuple[Any, ...]], why: str,
    inject: Callable[[], None], remove: Callable[[], None],
) -> None:  # fmt: skip
    """A third of the traffic lands and is committed; ``inject`` makes writes fail, the rest is published; the worker
    must retry (saying ``why`` in its log), stay up and commit nothing more; after ``remove`` everything lands
    exactly once."""
    messages = TRAFFIC.messages
    first = len(messages) // 3
    _publish(run, messages[:first])
    log = tmp_path / "worker.log"
    worker = spawn_cli(["worker"], run.to_env(), log)
    try:
        wait_for(lambda: _landed(run) == first or None, 240, 0.5, "the first third", worker)
        wait_for(lambda: sum(_committed(run)) == first or None, 120, 0.5, "the first third committed", worker)
        committed = _committed(run)
        inject()
        injected = time.monotonic()
        _publish(run, messages[first:])
        wait_for(lambda: RETRY.search(log.read_text()), 120, 0.2, "a failed write", worker)
        time.sleep(8)  # the worker backs off and retries, for a while (0.5, 1, 2, 4 s: 4 failures per partition)
        text = log.read_text()
        assert worker.poll() is None and why in text, text[-3000:]
        # nothing past the durable data is committed: the failing batch starts at the committed offsets
        assert _committed(run) == committed
        failing = {int(p): int(first) for p, first, _ in reversed(RETRY.findall(text))}  # the first failure each
        assert failing and all(committed[p] == offset for p, offset in failing.items()), (committed, failing)
        assert _landed(run) < len(messages)
        failures = len(RETRY.findall(text))
        remove()
        removed = time.monotonic()
        text = _finish(run, worker, log, TRAFFIC)
        print(f"\n{why!r}: fault held {removed - injected:.1f} s, {failures} failed writes logged meanwhile; "
              f"everything landed, committed and the worker stopped {time.monotonic() - removed:.1f} s after its "
              f"removal; {len(RETRY.findall(text))} failed writes in all")  # fmt: skip
    finally:
        stop(worker, 60)
    _check_exactly_once(run, TRAFFIC, clean)


def test_full_disk_holds_the_commit_until_space_returns(
    kafka: str, tmp_path: Path, clean_scores: list[tuple[Any, ...]]
) -> None:
    """The data folder on a small tmpfs, filled by a ballast file mid-stream: writes fail with ENOSPC, the worker
    logs why and retries, commits nothing past the durable data; once the ballast is gone everything lands once."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs of its own, and `mount` failed (root only): {mounted.stderr.strip()}")
    ballast = mount / "ballast"

    def fill() -> None:
        fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * (1 << 20))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)

    try:
        _failing_writes(_settings(kafka, mount / "data"), tmp_path, clean_scores, "No space left on device",
                        fill, ballast.unlink)  # fmt: skip
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_unwritable_dataset_folder_holds_the_commit_until_restored(
    kafka: str, tmp_path: Path, clean_scores: list[tuple[Any, ...]]
) -> None:
    """``<data>/scores`` replaced by a regular file mid-stream (as any user can): writes of the scores fail
    (ENOTDIR), the worker logs why and retries, commits nothing past the durable data; once the folder is back
    everything lands exactly once."""
    run = _settings(kafka, tmp_path / "data")
    scores, aside = run.data_dir / "scores", run.data_dir / "scores.aside"

    def replace() -> None:
        scores.rename(aside)
        scores.write_text("not a folder")

    def restore() -> None:
        scores.unlink()
        aside.rename(scores)

    _failing_writes(run, tmp_path, clean_scores, "Not a directory", replace, restore)
