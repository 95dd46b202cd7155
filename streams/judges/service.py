"""The ``evalstream judge`` loop: consume generations, judge them (:mod:`.runner`), publish the judgements, commit.

Usage (needs a broker and a chat-completions endpoint)::

    $ EVALSTREAM_JUDGE_BASE_URL=https://api.openai.com/v1 EVALSTREAM_JUDGE_API_KEY=... evalstream judge
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import tomllib
from pathlib import Path

from confluent_kafka import Consumer

from metrics.judges import Judge, JudgeConfigError, parse_judges
from streams.judges.client import ChatClient
from streams.judges.runner import JudgeCache, JudgeRunner, Provider
from streams.sdk.publisher import Publisher
from streams.sdk.schema import EventValidationError, GenerationEvent, parse_event
from streams.settings import Settings

log = logging.getLogger("evalstream.judge")


def configured_judges(settings: Settings) -> list[Judge]:
    """The judges of the evaluation config (raises :class:`metrics.judges.JudgeConfigError` naming the field)."""
    if settings.eval_config is None:
        return []
    return parse_judges(tomllib.loads(settings.eval_config.read_text("utf-8")))


def default_cache(settings: Settings) -> Path:
    return settings.judge_cache or Path.home() / ".cache" / "evalstream" / "judge-cache.sqlite"


def run(
    settings: Settings,
    judges: list[Judge],
    provider: Provider | None = None,
    stop: threading.Event | None = None,
    log_every_s: float = 30.0,
) -> JudgeRunner:
    """Judge until ``stop`` is set (or forever); returns the runner (its counters)."""
    if provider is None:
        if not settings.judge_base_url:
            raise ValueError("set EVALSTREAM_JUDGE_BASE_URL (an OpenAI-compatible API) to run the judges")
        provider = ChatClient(settings.judge_base_url, settings.judge_model, settings.judge_api_key,
                              settings.judge_timeout_s, settings.judge_retries)  # fmt: skip
    runner = JudgeRunner(judges, provider, JudgeCache(default_cache(settings)), settings.judge_model,
                         settings.judge_prices)  # fmt: skip
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers, "group.id": f"{settings.worker_id}-judge",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([settings.events_topic])
    stop = stop or threading.Event()
    last_log = time.monotonic()
    try:
        with Publisher(settings.bootstrap_servers, settings.events_topic) as publisher:
            while not stop.is_set():
                messages = consumer.consume(num_messages=200, timeout=0.5)
                for message in messages:
                    if message.error():
                        continue
                    try:
                        event = parse_event(message.value())
                    except EventValidationError:
                        continue  # the worker dead-letters it; nothing to judge
                    if isinstance(event, GenerationEvent):
                        for judgement in runner.judge(event):
                            publisher.publish(judgement)
                if messages:
                    publisher.flush()  # the judgements are in Kafka before the offsets move past their generations
                    consumer.commit(asynchronous=False)
                if time.monotonic() - last_log > log_every_s:
                    log.info("judge counters: %s", runner.report())
                    last_log = time.monotonic()
    finally:
        consumer.close()
        log.info("judge counters at shutdown: %s", runner.report())
    return runner


def serve(settings: Settings) -> str | None:
    """``evalstream judge``: run until interrupted; or why it cannot start (no judges, a bad config, no endpoint)."""
    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] [%(levelname)s] %(message)s")
    try:
        judges = configured_judges(settings)
    except (OSError, tomllib.TOMLDecodeError, JudgeConfigError) as exc:
        return str(exc)
    if not judges:
        return "no [judges.<name>] in the evaluation config (EVALSTREAM_EVAL_CONFIG): nothing to run"
    if not settings.judge_base_url:
        return "set EVALSTREAM_JUDGE_BASE_URL (an OpenAI-compatible API, e.g. https://api.openai.com/v1)"
    with contextlib.suppress(KeyboardInterrupt):
        run(settings, judges)
    return None
