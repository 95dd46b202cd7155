"""LLM judges end to end against the real broker: `evalstream judge`'s loop with a chat-completions stand-in, the
worker scoring the judgements, /v1/judges' agreement with the users' thumbs, and a replay that pays nothing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from api.settings import get_settings as api_settings
from metrics.agreement import Confusion
from metrics.judges import Judge
from sinks.catalog import connect, landed_counts, query
from streams.judges.client import ChatClient
from streams.judges.service import run
from streams.local.launch import spawn_cli, stop, wait_for
from streams.sdk.publisher import Publisher
from streams.settings import Settings
from tests.judge_standin import stand_in

pytestmark = pytest.mark.integration
N = 60


def traffic() -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """Generations (every third apologises), thumbs on most of them (up for most helpful answers, and a few
    surprises), and each generation's thumbs for the hand count."""
    events: list[dict[str, Any]] = []
    thumbs: dict[str, bool] = {}
    for i in range(N):
        gid, session, ts = f"g{i}", f"s{i % 5}", f"2026-11-30T10:{i // 60:02d}:{i % 60:02d}Z"
        sorry = i % 3 == 0
        output = "Sorry, I cannot help." if sorry else f"Do step {i}."
        events.append({"type": "generation", "event_id": f"e{i}", "ts": ts, "session_id": session, "app": "bot",
                       "generation_id": gid, "route": "answer", "model": "m", "prompt_version": "v1",
                       "input": f"question {i}", "output": output})  # fmt: skip
        if i % 4 != 3:
            up = (not sorry) != (i % 7 == 0)  # users mostly agree that apologies are bad, with exceptions
            thumbs[gid] = up
            events.append({"type": "feedback", "event_id": f"f{i}", "ts": ts, "session_id": session, "app": "bot",
                           "generation_id": gid, "thumbs": "up" if up else "down"})  # fmt: skip
    return events, thumbs


def judges_answer(client: TestClient) -> dict[str, Any]:
    body = client.get("/v1/judges", params={"since": "2026-11-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"}).json()
    assert body["count"] == 1
    return body["data"][0]


def test_judges_score_generations_agree_with_users_and_a_replay_pays_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"embed_backend": "off", "judge_cache": tmp_path / "judge-cache.sqlite"})
    events, thumbs = traffic()
    with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
        pub.publish_many(events)
    judge = Judge("helpful", "Is this helpful? Q: {input} A: {output}", requests_per_minute=100_000)
    worker = spawn_cli(["worker"], settings.to_env(), tmp_path / "worker.log")
    with stand_in() as server:
        done = threading.Event()
        provider = ChatClient(server.url, "judge-model", backoff_s=0.01)
        loop = threading.Thread(target=run, args=(settings, [judge], provider, done), daemon=True)
        loop.start()
        try:
            wait_for(lambda: landed_counts(settings.data_dir)[0] == len(events) + N or None, 180, what="judgements",
                     alive=worker)  # fmt: skip
        finally:
            done.set()
            loop.join(30)
        assert server.calls == N
        api = create_app()
        api.dependency_overrides[api_settings] = lambda: ApiSettings(data_dir=settings.data_dir)
        client = TestClient(api)
        first = judges_answer(client)
        assert first["judge"] == "helpful" and first["judged"] == N and first["unparsed"] == 0
        expected = Confusion.of((int(g[1:]) % 3 != 0, up) for g, up in thumbs.items())
        assert first["agreement"]["thumbs"] == expected.get()
        assert 0.4 < expected.kappa() < 1  # type: ignore[operator]
        # a replay: a judge with another consumer group reads everything again; the cache answers
        replay = settings.model_copy(update={"worker_id": settings.worker_id + "-again"})
        done = threading.Event()
        loop = threading.Thread(target=run, args=(replay, [judge], provider, done), daemon=True)
        loop.start()
        try:
            # the replayed judgements carry the same event ids: the worker dead-letters them as duplicates
            wait_for(lambda: landed_counts(settings.data_dir) == (len(events) + N, N) or None, 180,
                     what="the replayed judgements", alive=worker)  # fmt: skip
        finally:
            done.set()
            loop.join(30)
            stop(worker)
        assert server.calls == N  # nothing paid twice
        assert judges_answer(client) == first  # one verdict per generation and judge
    con = connect(settings.data_dir)
    rows = query(con, "SELECT count(DISTINCT generation_id), count(*), min(model), max(reason) FROM judgements")[1]
    assert rows == [(N, N, "m", "apologises")]
    reasons = query(con, "SELECT count(*) FROM dlq WHERE reason LIKE 'duplicate event_id ''judge-%'")[1]
    assert reasons == [(N,)]
