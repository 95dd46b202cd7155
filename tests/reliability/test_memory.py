"""Memory at steady load: the worker's resident set stays flat (within 20 %) once its state has reached the size its
expiry keeps it at. Short version by default (about 2 minutes); ``-m long`` runs 10 minutes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sinks.catalog import landed_counts
from streams.local.launch import spawn_cli, stop, wait_for
from streams.local.sample import generate
from streams.sdk.publisher import Publisher
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.app import TABLES

pytestmark = pytest.mark.integration


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _steady_load(settings: Settings, rate: float, seconds: float, stop_event: threading.Event) -> threading.Thread:
    """Fresh sessions at ``rate`` events/s for ``seconds`` (new ids, new outputs: the state keeps changing)."""

    def run() -> None:
        with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
            started, second = time.monotonic(), 0
            while second < seconds and not stop_event.is_set():
                pub.publish_many(generate(n_events=int(rate), n_sessions=20, seed=1000 + second).events)
                pub.flush()
                second += 1
                time.sleep(max(0.0, started + second - time.monotonic()))

    thread = threading.Thread(target=run, name="steady-load", daemon=True)
    thread.start()
    return thread


def _memory_run(settings: Settings, tmp_path: Path, seconds: float, rate: float = 300) -> None:
    # expiry short enough that the state stops growing within the run (the defaults keep a day of generations)
    ttl = min(60.0, seconds / 4)
    settings = settings.model_copy(update={
        "embed_backend": "off", "join_ttl_s": ttl, "refresh_window_s": ttl, "dedup_horizon_s": ttl,
        "worker_metrics_port": 0, "window_grace_s": 30.0,
    })  # fmt: skip
    ensure_topics(settings, tables=TABLES)
    worker = spawn_cli(["worker"], settings.to_env(), tmp_path / "worker.log")
    done = threading.Event()
    samples: list[tuple[float, float]] = []
    try:
        wait_for(lambda: "Worker ready" in (tmp_path / "worker.log").read_text() or None, 120,
                 what="the worker", alive=worker)  # fmt: skip
        load = _steady_load(settings, rate, seconds, done)
        started = time.monotonic()
        while load.is_alive():
            samples.append((time.monotonic() - started, _rss_mb(worker.pid)))
            time.sleep(5)
            assert worker.poll() is None
        wait_for(lambda: landed_counts(settings.data_dir)[0] >= int(rate) * int(seconds) * 0.99 or None, 120,
                 what="the load", alive=worker)  # fmt: skip
    finally:
        done.set()
        stop(worker)
    # after two expiry periods the state is at its steady size: from then on the resident set must stay flat
    steady = [mb for t, mb in samples if t >= 2 * ttl + 10]
    low, high = min(steady), max(steady)
    print(f"\nRSS over {seconds:.0f} s at {rate:.0f} events/s (MB, every 5 s): "
          f"{[round(mb) for _, mb in samples]}; steady {low:.0f}..{high:.0f} MB ({high / low - 1:+.0%})")  # fmt: skip
    assert len(steady) >= 6 and high <= 1.2 * low


def test_worker_memory_is_flat_at_steady_load(settings: Settings, tmp_path: Path) -> None:
    _memory_run(settings, tmp_path, seconds=150)


@pytest.mark.long
@pytest.mark.timeout(1200)
def test_worker_memory_is_flat_over_ten_minutes(settings: Settings, tmp_path: Path) -> None:
    _memory_run(settings, tmp_path, seconds=600)
