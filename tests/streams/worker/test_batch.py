"""BatchProcessor without Kafka: the embedding stage's failure handling and the rows one batch produces."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metrics.rates import KeyedRates
from sinks.catalog import connect
from streams.embedding.cache import CachedEncoder
from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.batch import BatchProcessor
from streams.worker.counters import WorkerCounters
from streams.worker.embedding_scores import EmbeddingScorer
from streams.worker.evalconfig import ReferenceBook
from streams.worker.join import GenerationJoin
from streams.worker.persist import ParquetSinks
from tests.helpers import DeadLetters, Event, Message

POISON = "this output breaks the encoder"


class FlakyEncoder:
    """A deterministic encoder that fails on any call containing POISON (like a model error on one text)."""

    name = "flaky"
    dim = 384  # the stored embedding width

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if POISON in texts:
            raise RuntimeError("model exploded")
        v = np.array([np.random.default_rng(len(t)).standard_normal(self.dim) for t in texts], np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _generation(i: int, output: str) -> bytes:
    return json.dumps({
        "type": "generation", "event_id": f"e{i}", "ts": "2026-11-25T10:00:00Z", "session_id": "s", "app": "a",
        "generation_id": f"g{i}", "route": "r", "model": "m", "prompt_version": "v", "input": f"question {i}",
        "output": output,
    }).encode()  # fmt: skip


def test_an_encoder_failure_keeps_the_events_and_counts_the_generation(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embed_backend="off")
    counters = WorkerCounters()
    encoder = CachedEncoder(FlakyEncoder())
    processor = BatchProcessor(
        GenerationJoin({}, 3600), DeadLetters(), ParquetSinks(settings.data_dir), counters, {}, settings,  # type: ignore[arg-type]
        EmbeddingScorer(encoder, ReferenceBook(None, encoder)),
    )  # fmt: skip
    values = [_generation(0, "fine"), _generation(1, POISON), _generation(2, "also fine"), b"{not json"]
    batch = [Event(Message("t", 0, offset, None, v)) for offset, v in enumerate(values)]
    asyncio.run(processor.process(batch))  # type: ignore[arg-type]

    assert (counters.valid, counters.dead_lettered) == (3, 1)
    assert (counters.embedded, counters.embedding_errors) == (2, 1)
    con = connect(tmp_path)
    assert sorted(r[0] for r in con.execute("SELECT generation_id FROM events").fetchall()) == ["g0", "g1", "g2"]
    assert sorted(r[0] for r in con.execute("SELECT generation_id FROM embeddings").fetchall()) == ["g0", "g2"]
    by_metric = dict(
        con.execute("SELECT metric, list(generation_id ORDER BY generation_id) FROM scores GROUP BY 1").fetchall()
    )
    assert by_metric["relevance"] == ["g0", "g2"]
    assert by_metric["latency_ms" if "latency_ms" in by_metric else "error"] == ["g0", "g1", "g2"]
    assert con.execute("SELECT count(*) FROM dlq").fetchone() == (1,)


def test_a_lone_surrogate_does_not_block_its_partition(tmp_path: Path) -> None:
    """Valid JSON with a lone surrogate escape once parsed fine and then failed every Parquet write (UTF-8 cannot
    hold it): the retry loop held the partition forever. It is stored with U+FFFD in its place, written once."""
    settings = Settings(data_dir=tmp_path, embed_backend="off")
    counters = WorkerCounters()
    processor = BatchProcessor(
        GenerationJoin({}, 3600), DeadLetters(), ParquetSinks(settings.data_dir), counters, {}, settings,  # type: ignore[arg-type]
    )  # fmt: skip
    batch = [Event(Message("t", 0, 0, None, _generation(0, "cut emoji \ud83d")))]
    asyncio.run(asyncio.wait_for(processor.process(batch), 20))  # type: ignore[arg-type]
    assert (counters.valid, counters.write_retries) == (1, 0)
    stored = connect(tmp_path).execute("SELECT output FROM events").fetchall()
    assert stored == [("cut emoji \ufffd",)]


def test_an_encoder_of_another_width_is_refused_up_front() -> None:
    class Small(FlakyEncoder):
        dim = 4

    encoder = CachedEncoder(Small())
    with pytest.raises(ValueError, match="4-dimensional"):
        EmbeddingScorer(encoder, ReferenceBook(None, encoder))


def _ask(i: int, session: str, text: str, minute: int, route: str = "r") -> bytes:
    return json.dumps({
        "type": "generation", "event_id": f"e{i}", "ts": f"2026-11-25T10:{minute:02d}:00Z", "session_id": session,
        "app": "a", "generation_id": f"g{i}", "route": route, "model": "m", "prompt_version": f"v{i}",
        "input": text, "output": f"answer {i}",
    }).encode()  # fmt: skip


def test_refreshes_mark_the_earlier_generation_once_and_survive_a_replay(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embed_backend="off", refresh_window_s=600)
    counters = WorkerCounters()
    asks: dict[str, Any] = {}  # stands in for the Faust table, kept across the replay
    values = [
        _ask(0, "s1", "What is my balance?", 0),
        _ask(1, "s1", "what is  my balance? ", 2),  # refresh of g0 (whitespace and case ignored)
        _ask(2, "s2", "What is my balance?", 3),  # another session: not a refresh
        _ask(3, "s1", "What is my balance?", 4, route="other"),  # another route: not a refresh
        _ask(4, "s1", "What is my balance?", 9),  # refresh of g1 (each refresh marks the one before it)
        _ask(5, "s1", "What is my balance?", 30),  # 21 minutes later: outside the window
        _ask(6, "s1", "And my limit?", 31),
    ]
    batch = [Event(Message("t", 0, offset, None, v)) for offset, v in enumerate(values)]

    def run() -> list[tuple[str, str, str, str | None]]:
        processor = BatchProcessor(
            GenerationJoin({}, 3600), DeadLetters(), ParquetSinks(settings.data_dir), counters, {}, settings, None,  # type: ignore[arg-type]
            asks,
        )  # fmt: skip
        asyncio.run(processor.process(batch))  # type: ignore[arg-type]
        rows = connect(tmp_path).execute(
            "SELECT generation_id, event_id, prompt_version, route FROM scores WHERE metric = 'refreshed' "
            "AND value = 1 ORDER BY generation_id"
        )
        return rows.fetchall()

    expected = [("g0", "e1", "v0", "r"), ("g1", "e4", "v1", "r")]  # the earlier generation's labels
    assert run() == expected
    assert counters.refreshes == 2
    # refresh rate per session, from what the sinks wrote: refreshed generations / generations
    rows = (
        connect(tmp_path)
        .execute(
            "SELECT e.session_id, e.generation_id, count(s.generation_id) > 0 FROM events e LEFT JOIN scores s "
            "ON s.generation_id = e.generation_id AND s.metric = 'refreshed' WHERE e.type = 'generation' GROUP BY ALL"
        )
        .fetchall()
    )
    per_session = KeyedRates()
    for session, _, refreshed in rows:
        per_session = per_session.update(session, refreshed)
    s1, s2 = per_session.rates["s1"], per_session.rates["s2"]
    assert (s1.successes, s1.trials, s2.successes, s2.trials) == (2, 6, 0, 1)
    assert run() == expected  # the same batch again (a replay after a crash): same rows, no self-refresh
    assert counters.refreshes == 4


def test_the_worker_batches_its_own_kafka_writes(tmp_path: Path) -> None:
    """Changelog and DLQ writes go out in batches: the producer settings reach Faust's aiokafka producer."""
    settings = Settings(data_dir=tmp_path, embed_backend="off", producer_linger_s=0.02, producer_max_batch_bytes=65536)
    app = create_app(settings, partitions=1)
    assert (app.conf.producer_linger, app.conf.producer_max_batch_size) == (0.02, 65536)
    assert (app.producer.linger_ms, app.producer.max_batch_size) == (20, 65536)
    default = create_app(Settings(data_dir=tmp_path, embed_backend="off"), partitions=1)
    assert default.producer.linger_ms == 10


def test_the_commit_interval_reaches_faust(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, embed_backend="off", commit_interval_s=60), partitions=1)
    assert app.conf.broker_commit_interval == 60.0
    assert create_app(Settings(data_dir=tmp_path, embed_backend="off"), partitions=1).conf.broker_commit_interval == 2.8


def test_the_session_timeout_reaches_the_consumer(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, embed_backend="off", session_timeout_s=20), partitions=1)
    assert app.conf.broker_session_timeout == 20.0
    default = create_app(Settings(data_dir=tmp_path, embed_backend="off"), partitions=1)
    assert default.conf.broker_session_timeout == 60.0


def test_a_dead_encoder_process_is_replaced_and_the_batch_encoded_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import os
    import signal
    import time

    from streams.embedding.onnx_export import default_cache_dir
    from streams.embedding.process import EncoderProcess

    settings = Settings(data_dir=tmp_path, embed_backend="off")
    counters = WorkerCounters()
    child = EncoderProcess.start("onnx", default_cache_dir())
    encoder = CachedEncoder(child)
    processor = BatchProcessor(
        GenerationJoin({}, 3600), DeadLetters(), ParquetSinks(settings.data_dir), counters, {}, settings,  # type: ignore[arg-type]
        EmbeddingScorer(encoder, ReferenceBook(None, encoder)),
    )  # fmt: skip
    try:
        first = [Event(Message("t", 0, i, None, _generation(i, f"answer number {i}"))) for i in range(3)]
        asyncio.run(processor.process(first))  # type: ignore[arg-type]
        pid = child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        stat = Path(f"/proc/{pid}/stat")
        while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.02)  # dead, not yet reaped by the EncoderProcess
        second = [Event(Message("t", 0, i, None, _generation(i, f"answer number {i}"))) for i in range(3, 8)]
        with caplog.at_level("WARNING"):
            asyncio.run(processor.process(second))  # type: ignore[arg-type]
    finally:
        child.close()
    assert (counters.embedded, counters.embedding_errors) == (8, 0)
    assert child.connects == 2 and child.pid != pid
    assert "encoding it again" in caplog.text and "one by one" not in caplog.text
    con = connect(tmp_path)
    assert con.execute("SELECT count(DISTINCT generation_id) FROM embeddings").fetchone() == (8,)
