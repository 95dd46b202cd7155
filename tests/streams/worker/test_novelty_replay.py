"""Novelty after a crash or a rebalance: a replayed message gets the value it had, whatever the batch boundaries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.catalog import connect
from streams.settings import Settings
from streams.worker.batch import BatchProcessor
from streams.worker.counters import WorkerCounters
from streams.worker.join import GenerationJoin
from streams.worker.persist import ParquetSinks
from tests.helpers import DeadLetters, Event, Message

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon"]


def _generation(offset: int, output: str) -> Event:
    value = json.dumps({
        "type": "generation", "event_id": f"e{offset}", "ts": "2026-11-25T10:00:00Z", "session_id": "s",
        "app": "a", "generation_id": f"g{offset}", "route": "r", "model": "m", "prompt_version": "v",
        "input": "q", "output": output,
    }).encode()  # fmt: skip
    return Event(Message("t", 0, offset, b"s", value))


def _novelty(data_dir: Path) -> dict[str, float]:
    found = connect(data_dir).execute("SELECT generation_id, value FROM scores WHERE metric = 'novelty'").fetchall()
    return dict(found)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join), min_size=2, max_size=30),
    st.data(),
)
def test_a_replay_from_the_committed_offset_gives_every_generation_its_first_value(
    tmp_path_factory: object, outputs: list[str], data: st.DataObject
) -> None:
    """Outputs processed in batches, then the partition replayed from the committed offset in other batches (as
    after a crash): every novelty value is the same, and the state keeps only ``k`` outputs before that offset."""
    k = 3
    cut = data.draw(st.integers(1, len(outputs) - 1), label="batch boundary")
    # offsets commit only at batch ends (a batch is acked once it is durable)
    committed = data.draw(st.sampled_from([0, cut, len(outputs)]), label="committed offset")
    replay_cut = data.draw(st.integers(committed, len(outputs)), label="replay batch boundary")
    messages = [_generation(o, text) for o, text in enumerate(outputs)]
    tmp = Path(str(tmp_path_factory.mktemp("replay")))  # type: ignore[attr-defined]
    recent: dict[str, object] = {}
    processor = BatchProcessor(
        GenerationJoin({}, 3600), DeadLetters(), ParquetSinks(tmp), WorkerCounters(), recent,  # type: ignore[arg-type]
        Settings(data_dir=tmp, embed_backend="off", novelty_k=k, novelty_level="word"),
        committed=lambda partition: committed,
    )  # fmt: skip
    for batch in (messages[:cut], messages[cut:]):
        asyncio.run(processor.process(batch))  # type: ignore[arg-type]
    first = _novelty(tmp)
    kept = recent["0:a:r"]
    assert isinstance(kept, list) and [o for o, _ in kept] == list(range(max(0, committed - k), len(outputs)))

    processor.reset()  # a new owner of the partition, its state restored as the changelog had it
    for batch in (messages[committed:replay_cut], messages[replay_cut:]):
        if batch:
            asyncio.run(processor.process(batch))  # type: ignore[arg-type]
    assert _novelty(tmp) == first
    assert len(first) == len(outputs) - 1  # every generation but the first had earlier outputs
