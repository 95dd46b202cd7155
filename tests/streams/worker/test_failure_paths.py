"""BatchProcessor's failure paths without Kafka: each test injects one fault and checks what the worker keeps.

Faults are injected with ``monkeypatch`` (a failing Parquet write, a scorer or novelty kernel that raises, a
clock moved past the join's TTL); the order of events is observed through the fakes, never through timing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from rapidfuzz.distance import Levenshtein

import streams.worker.batch as batch_module
import streams.worker.novelty_stage as novelty_stage
import streams.worker.persist as persist
from sinks.catalog import connect
from sinks.parquet import PartitionedParquetWriter
from streams.settings import Settings
from streams.worker.batch import BatchProcessor
from streams.worker.counters import WorkerCounters
from streams.worker.join import GenerationJoin
from streams.worker.persist import ParquetSinks
from tests.helpers import DeadLetters, Event, Message

TOPIC = "t"
KEY = b"s"
RULE_METRICS = {"latency_ms", "error", "pii_input", "pii_output"}  # a generation's rule scores (no tokens, no PII)


def _generation(i: int, output: str | None = None, route: str = "r", ts: str = "2026-11-25T10:00:00Z") -> bytes:
    return json.dumps({
        "type": "generation", "event_id": f"e{i}", "ts": ts, "session_id": "s", "app": "a",
        "generation_id": f"g{i}", "route": route, "model": "m", "prompt_version": "v", "input": f"question {i}",
        "output": f"answer {i}" if output is None else output, "latency_ms": 100 + i,
    }).encode()  # fmt: skip


def _feedback(i: int, generation_id: str, thumbs: str = "up") -> bytes:
    return json.dumps({
        "type": "feedback", "event_id": f"e{i}", "ts": "2026-11-25T10:05:00Z", "session_id": "s", "app": "a",
        "generation_id": generation_id, "thumbs": thumbs,
    }).encode()  # fmt: skip


def _edit(i: int, generation_id: str, edited_output: str) -> bytes:
    return json.dumps({
        "type": "edit", "event_id": f"e{i}", "ts": "2026-11-25T10:05:00Z", "session_id": "s", "app": "a",
        "generation_id": generation_id, "edited_output": edited_output,
    }).encode()  # fmt: skip


def _regenerate(i: int, generation_id: str) -> bytes:
    return json.dumps({
        "type": "regenerate", "event_id": f"e{i}", "ts": "2026-11-25T10:05:00Z", "session_id": "s", "app": "a",
        "generation_id": generation_id,
    }).encode()  # fmt: skip


def _batch(values: list[bytes], first_offset: int = 0, partition: int = 0) -> list[Event]:
    return [Event(Message(TOPIC, partition, first_offset + n, KEY, v)) for n, v in enumerate(values)]


def _processor(
    tmp_path: Path,
    counters: WorkerCounters,
    settings: Settings | None = None,
    dead_letters: DeadLetters | None = None,
    recent: dict[str, Any] | None = None,
) -> BatchProcessor:
    """Built like test_batch.py's: plain dicts as tables, no broker, no embedder."""
    settings = settings or Settings(data_dir=tmp_path, embed_backend="off")
    return BatchProcessor(
        GenerationJoin({}, settings.join_ttl_s), dead_letters or DeadLetters(), ParquetSinks(settings.data_dir),  # type: ignore[arg-type]
        counters, {} if recent is None else recent, settings,
    )  # fmt: skip


def _run(processor: BatchProcessor, batch: list[Event]) -> None:
    asyncio.run(processor.process(batch))  # type: ignore[arg-type]


def _metrics_by_generation(tmp_path: Path) -> dict[str, set[str]]:
    rows = connect(tmp_path).execute("SELECT generation_id, list(metric) FROM scores GROUP BY 1").fetchall()
    return {gid: set(metrics) for gid, metrics in rows}


def _novelty(tmp_path: Path) -> dict[str, float]:
    rows = connect(tmp_path).execute("SELECT generation_id, value FROM scores WHERE metric = 'novelty'").fetchall()
    return dict(rows)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "evalstream.worker"]


# 1. Parquet write retries --------------------------------------------------------------------------------------


class _GatedAsyncio:
    """``asyncio`` as streams.worker.persist sees it: each backoff sleep is reported, then waits for the test."""

    def __init__(self) -> None:
        self.backoffs: asyncio.Queue[float] = asyncio.Queue()
        self.release: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(self, delay: float) -> None:
        self.backoffs.put_nowait(delay)
        await self.release.get()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


async def _next_backoff(gate: _GatedAsyncio, task: asyncio.Task[None]) -> float:
    """The delay of the next backoff sleep; fails if ``complete()`` finished instead (a hang guard, not a bound)."""
    waiter = asyncio.ensure_future(gate.backoffs.get())
    done, _ = await asyncio.wait({waiter, task}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if task in done:
            task.result()  # re-raises what complete() raised, if anything
            pytest.fail("complete() returned while the Parquet write was still failing")
        pytest.fail("no backoff and no result from complete()")
    return waiter.result()


def test_a_failing_parquet_write_is_retried_and_complete_waits_until_it_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """complete() (after which the agent acks offsets) returns only once the batch's rows are on disk, exactly once."""
    counters = WorkerCounters()
    processor = _processor(tmp_path, counters)
    attempts: list[str] = []  # the dataset of each PartitionedParquetWriter.write call, in order
    original_write = PartitionedParquetWriter.write

    def flaky_write(self: PartitionedParquetWriter, *args: Any) -> list[Path]:
        attempts.append(self.dir.name)
        if self.dir.name == "scores" and attempts.count("scores") <= 2:
            raise OSError("disk full")  # after the events file of the same batch was written
        return original_write(self, *args)

    monkeypatch.setattr(PartitionedParquetWriter, "write", flaky_write)
    batch = _batch([_generation(i) for i in range(3)])

    async def scenario() -> None:
        gate = _GatedAsyncio()
        monkeypatch.setattr(persist, "asyncio", gate)
        task = asyncio.create_task(processor.complete(processor.begin(batch)))  # type: ignore[arg-type]

        assert await _next_backoff(gate, task) == 0.5  # the first write failed
        assert attempts == ["events", "scores"]
        assert counters.write_retries == 1
        assert not task.done() and counters.batches == 0
        gate.release.put_nowait(None)

        assert await _next_backoff(gate, task) == 1.0  # the second write failed; the backoff doubled
        assert attempts == ["events", "scores"] * 2
        assert counters.write_retries == 2
        assert not task.done() and counters.batches == 0
        gate.release.put_nowait(None)

        await task  # the third write succeeds
        assert gate.backoffs.empty()

    with caplog.at_level(logging.ERROR, logger="evalstream.worker"):
        asyncio.run(scenario())

    assert attempts == ["events", "scores"] * 2 + ["events", "scores", "embeddings", "dlq"]
    assert (counters.write_retries, counters.batches, counters.valid) == (2, 1, 3)
    failures = [m for m in _errors(caplog) if m.startswith("writing Parquet")]
    assert failures == [
        "writing Parquet for t[0] offsets 0..2 failed; retrying in 0.5s (offsets stay uncommitted)",
        "writing Parquet for t[0] offsets 0..2 failed; retrying in 1.0s (offsets stay uncommitted)",
    ]
    con = connect(tmp_path)
    # the events file the failed attempts had written was replaced, not duplicated
    assert len(list((tmp_path / "events").rglob("*.parquet"))) == 1
    events = con.execute("SELECT _offset, generation_id FROM events ORDER BY _offset").fetchall()
    assert events == [(0, "g0"), (1, "g1"), (2, "g2")]
    assert con.execute("SELECT count(*), count(DISTINCT (event_id, metric)) FROM scores").fetchone() == (
        counters.scores,
        counters.scores,
    )
    assert _metrics_by_generation(tmp_path) == {
        "g0": RULE_METRICS,
        "g1": RULE_METRICS | {"novelty"},
        "g2": RULE_METRICS | {"novelty"},
    }


# 3. A processing error on one event -----------------------------------------------------------------------------


def _break_scoring_of(monkeypatch: pytest.MonkeyPatch, event_id: str) -> None:
    """Rule scoring raises RuntimeError("scorer broke on <event_id>") for that one event."""
    real_scores_for = batch_module.scores_for

    def scores_for(event: Any, ref: Any) -> Any:
        if event.event_id == event_id:
            raise RuntimeError(f"scorer broke on {event_id}")
        return real_scores_for(event, ref)

    monkeypatch.setattr(batch_module, "scores_for", scores_for)


def test_an_unexpected_error_on_one_event_dead_letters_it_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-validation exception on one event sends that message to the dead letters; the batch goes on."""
    _break_scoring_of(monkeypatch, "e2")
    counters = WorkerCounters()
    dead_letters = DeadLetters()
    processor = _processor(tmp_path, counters, dead_letters=dead_letters)
    values = [_generation(i) for i in range(5)] + [_feedback(5, "g0")]
    with caplog.at_level(logging.ERROR, logger="evalstream.worker"):
        _run(processor, _batch(values))

    reason = "processing error: RuntimeError: scorer broke on e2"
    assert dead_letters.sent == [(values[2], [("evalstream-reason", reason.encode()), ("evalstream-source", b"t:0:2")])]
    assert (counters.valid, counters.dead_lettered) == (5, 1)
    assert "failed to process t[0]@2" in _errors(caplog)
    con = connect(tmp_path)
    dlq = con.execute("SELECT reason, _topic, _partition, _offset, key, value FROM dlq").fetchall()
    assert dlq == [(reason, "t", 0, 2, KEY, values[2])]
    events = con.execute("SELECT list(event_id ORDER BY _offset), list(_offset ORDER BY _offset) FROM events")
    assert events.fetchone() == (["e0", "e1", "e3", "e4", "e5"], [0, 1, 3, 4, 5])
    # every other event is scored (the first generation of a route has no novelty: nothing to compare with)
    assert _metrics_by_generation(tmp_path) == {
        "g0": RULE_METRICS | {"thumbs_up"},
        "g1": RULE_METRICS | {"novelty"},
        "g3": RULE_METRICS | {"novelty"},
        "g4": RULE_METRICS | {"novelty"},
    }


def test_a_dead_lettered_generation_leaves_nothing_for_a_follow_up_to_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generation that fails while being scored is in the DLQ, not in the join: its feedback is an orphan."""
    _break_scoring_of(monkeypatch, "e1")
    counters = WorkerCounters()
    processor = _processor(tmp_path, counters)
    _run(processor, _batch([_generation(0), _generation(1)]))
    assert set(processor.join.table) == {"g0"}
    _run(processor, _batch([_feedback(2, "g1"), _feedback(3, "g0")], first_offset=2))
    assert (counters.dead_lettered, counters.orphans) == (1, 1)
    assert _feedback_labels(tmp_path, "e2") == [("g1", "thumbs_up", 1.0, None, None, None)]


# 4. Novelty fallbacks -------------------------------------------------------------------------------------------


def _novelty_oracle(outputs: list[tuple[str, str]]) -> list[float | None]:
    """Independent of metrics.novelty: rapidfuzz's normalized Levenshtein over words (the default level), min over
    the route's earlier outputs."""
    earlier: dict[str, list[str]] = {}
    values: list[float | None] = []
    for route, text in outputs:
        seen = earlier.setdefault(route, [])
        values.append(min(Levenshtein.normalized_distance(text.split(), s.split()) for s in seen) if seen else None)
        seen.append(text)
    return values


def _failing_novelty_many(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("numba kernel failed")


def test_a_failing_batch_novelty_falls_back_to_the_same_values_output_by_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When the batched novelty call raises, each generation's novelty is still stored, with the same value."""
    monkeypatch.setattr(novelty_stage, "novelty_many", _failing_novelty_many)
    counters = WorkerCounters()
    recent: dict[str, Any] = {}
    processor = _processor(tmp_path, counters, recent=recent)
    outputs = [
        ("r", "hello there"),
        ("r", "hello there!"),
        ("r2", "a completely different route"),
        ("r", "good morning to you"),
        ("r2", "a completely different route?"),
        ("r", "hello"),
    ]
    with caplog.at_level(logging.ERROR, logger="evalstream.worker"):
        _run(processor, _batch([_generation(i, text, route) for i, (route, text) in enumerate(outputs)]))

    assert "novelty of a batch failed; computing it output by output" in _errors(caplog)
    assert counters.novelty_errors == 0
    expected = {f"g{i}": v for i, v in enumerate(_novelty_oracle(outputs)) if v is not None}
    assert set(expected) == {"g1", "g3", "g4", "g5"}
    assert _novelty(tmp_path) == pytest.approx(expected, abs=1e-9)
    assert recent == {  # (offset, output): nothing committed yet, so everything is kept for a replay
        "0:a:r": [[0, "hello there"], [1, "hello there!"], [3, "good morning to you"], [5, "hello"]],
        "0:a:r2": [[2, "a completely different route"], [4, "a completely different route?"]],
    }


def test_a_novelty_failure_on_one_output_skips_only_its_score_and_keeps_it_in_the_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A generation whose own novelty fails has no novelty score, its other scores, and later ones compare with it."""
    poison = "the poisoned answer"
    real_novelty = novelty_stage.novelty

    def novelty(output: str, recent: Any, level: Any) -> float | None:
        if output == poison:
            raise ValueError("kernel crashed")
        return real_novelty(output, recent, level)

    monkeypatch.setattr(novelty_stage, "novelty_many", _failing_novelty_many)
    monkeypatch.setattr(novelty_stage, "novelty", novelty)
    counters = WorkerCounters()
    recent: dict[str, Any] = {}
    processor = _processor(tmp_path, counters, recent=recent)
    outputs = ["hello there", poison, "the poisoned answer!"]
    with caplog.at_level(logging.ERROR, logger="evalstream.worker"):
        _run(processor, _batch([_generation(i, text) for i, text in enumerate(outputs)]))

    assert counters.novelty_errors == 1
    assert "generation g1 stored without novelty: kernel crashed" in _errors(caplog)
    assert counters.valid == 3 and counters.dead_lettered == 0
    assert _metrics_by_generation(tmp_path) == {
        "g0": RULE_METRICS,
        "g1": RULE_METRICS,  # no novelty, every other score
        "g2": RULE_METRICS | {"novelty"},
    }
    # g2 was compared with the poisoned output too: one word of three apart (without it, 1.0 from "hello there")
    assert _novelty(tmp_path) == pytest.approx({"g2": 1 / 3}, abs=1e-9)
    assert recent == {"0:a:r": [[offset, text] for offset, text in enumerate(outputs)]}

    monkeypatch.undo()  # the kernels work again: the next batch reads the saved state
    _run(processor, _batch([_generation(3, poison)], first_offset=3))
    assert _novelty(tmp_path) == pytest.approx({"g2": 1 / 3, "g3": 0.0}, abs=1e-9)
    assert recent == {"0:a:r": [[offset, text] for offset, text in enumerate([*outputs, poison])]}


# 5. Orphans and join expiry -------------------------------------------------------------------------------------


def test_follow_ups_of_an_unknown_generation_are_orphans_scored_without_labels(tmp_path: Path) -> None:
    """Follow-ups of a never-seen generation are orphans: feedback keeps thumbs_up (no labels), an edit no score."""
    counters = WorkerCounters()
    processor = _processor(tmp_path, counters)
    values = [
        _feedback(0, "g-unknown-1"),
        _edit(1, "g-unknown-2", "my own text"),
        _regenerate(2, "g-unknown-3"),
        _generation(3, "kitten"),
        _edit(4, "g3", "sitting"),  # a joined edit, for contrast
    ]
    _run(processor, _batch(values))

    assert counters.orphans == 3
    assert (counters.valid, counters.dead_lettered) == (5, 0)
    con = connect(tmp_path)
    follow_ups = con.execute(
        "SELECT event_id, generation_id, metric, value, route, model, prompt_version FROM scores "
        "WHERE event_id IN ('e0', 'e1', 'e2') ORDER BY event_id, metric"
    ).fetchall()
    assert follow_ups == [
        ("e0", "g-unknown-1", "thumbs_up", 1.0, None, None, None),
        ("e2", "g-unknown-3", "regenerated", 1.0, None, None, None),
    ]
    joined_edit = con.execute("SELECT metric, route, model FROM scores WHERE event_id = 'e4' ORDER BY metric")
    assert joined_edit.fetchall() == [
        ("edit_accepted", "r", "m"),
        ("edit_distance", "r", "m"),
        ("edit_ratio", "r", "m"),
        ("edit_word_distance", "r", "m"),
    ]
    assert con.execute("SELECT count(*) FROM events").fetchone() == (5,)


class _Clock:
    """``time`` as streams.worker.batch sees it, with ``time()`` set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


T0 = 1_800_000_000.0


def _ttl_processor(tmp_path: Path, counters: WorkerCounters, monkeypatch: pytest.MonkeyPatch) -> BatchProcessor:
    monkeypatch.setattr(batch_module, "time", _Clock(T0))
    return _processor(tmp_path, counters, Settings(data_dir=tmp_path, embed_backend="off", join_ttl_s=60))


def _feedback_labels(tmp_path: Path, event_id: str) -> list[tuple[Any, ...]]:
    rows = connect(tmp_path).execute(
        "SELECT generation_id, metric, value, route, model, prompt_version FROM scores WHERE event_id = ?", [event_id]
    )
    return rows.fetchall()


def test_a_feedback_within_the_join_ttl_joins_its_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A follow-up 59 s after its generation (TTL 60 s) is joined: its score carries route, model and version."""
    counters = WorkerCounters()
    processor = _ttl_processor(tmp_path, counters, monkeypatch)
    _run(processor, _batch([_generation(1)]))
    batch_module.time.now = T0 + 59  # type: ignore[attr-defined]
    _run(processor, _batch([_feedback(2, "g1")], first_offset=1))

    assert (counters.orphans, counters.expired) == (0, 0)
    assert _feedback_labels(tmp_path, "e2") == [("g1", "thumbs_up", 1.0, "r", "m", "v")]


def test_a_generation_expired_from_the_join_makes_its_feedback_an_orphan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a batch runs past the TTL the generation is dropped (expired) and a later follow-up is an orphan."""
    counters = WorkerCounters()
    processor = _ttl_processor(tmp_path, counters, monkeypatch)
    _run(processor, _batch([_generation(1)]))
    batch_module.time.now = T0 + 61  # type: ignore[attr-defined]
    _run(processor, _batch([_generation(5)], first_offset=1))  # any batch of the partition expires it
    assert counters.expired == 1
    assert processor.join.lookup("g1") is None
    batch_module.time.now = T0 + 62  # type: ignore[attr-defined]
    _run(processor, _batch([_feedback(2, "g1")], first_offset=2))

    assert counters.orphans == 1
    assert counters.expired == 1
    assert _feedback_labels(tmp_path, "e2") == [("g1", "thumbs_up", 1.0, None, None, None)]


def test_a_feedback_after_the_ttl_is_an_orphan_even_as_the_first_batch_past_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follow-up 61 s after its generation (TTL 60 s) is an orphan, with no batch in between."""
    counters = WorkerCounters()
    processor = _ttl_processor(tmp_path, counters, monkeypatch)
    _run(processor, _batch([_generation(1)]))
    batch_module.time.now = T0 + 61  # type: ignore[attr-defined]
    _run(processor, _batch([_feedback(2, "g1")], first_offset=1))

    assert counters.expired >= 1
    assert counters.orphans == 1
    assert _feedback_labels(tmp_path, "e2") == [("g1", "thumbs_up", 1.0, None, None, None)]
