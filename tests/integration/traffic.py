"""The sample traffic of the integration tests: publishing it, and the refreshes it must produce."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sinks.catalog import landed_counts
from streams.local.launch import spawn_cli, stop, wait_for
from streams.local.sample import SampleTraffic
from streams.sdk.publisher import Publisher
from streams.settings import Settings


def expected_refreshes(events: list[dict], window_s: float = 600) -> set[tuple[str, str]]:
    """(refreshed generation, refreshing event) pairs, computed independently of the worker's code: per
    session, app and route, a generation whose input equals an earlier one's (whitespace and case aside)
    within the window refreshes the latest such one. Events are in publication order, which is each
    session's order on its partition."""
    last: dict[tuple[str, str, str, str], dict] = {}
    out = set()
    for e in events:
        if e["type"] != "generation":
            continue
        key = (e["session_id"], e["app"], e["route"], " ".join(e["input"].lower().split()))
        ts = datetime.fromisoformat(e["ts"]).timestamp()
        if key in last and abs(ts - last[key]["t"]) <= window_s:
            out.add((last[key]["generation_id"], e["event_id"]))
        last[key] = {**e, "t": ts}
    return out


def publish(settings: Settings, traffic: SampleTraffic) -> None:
    """The sample events, then the malformed messages, to the settings' events topic."""
    with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
        pub.publish_many(traffic.events)
        for key, value in traffic.malformed:
            pub.publish_raw(value, key)


def run_worker_until_landed(
    settings: Settings, events: int, dead_letters: int, log_path: Path
) -> tuple[bool, int | None, str]:
    """Run ``evalstream worker`` until Parquet holds ``events`` valid events and ``dead_letters`` DLQ rows, then
    stop it cleanly: whether it was still alive then, its exit code and its log."""
    worker = spawn_cli(["worker"], settings.to_env(), log_path)
    try:
        wait_for(
            lambda: landed_counts(settings.data_dir) == (events, dead_letters) or None,
            180,
            what="the worker",
            alive=worker,
        )
        alive = worker.poll() is None
    finally:
        code = stop(worker)
    return alive, code, log_path.read_text()
