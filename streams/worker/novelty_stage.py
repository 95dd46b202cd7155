"""Novelty in the worker: each generation against the recent outputs of its app and route on its partition.

The pure computation is :mod:`metrics.novelty`; this module keeps its state in a Faust table (key
``"<partition>:<app>:<route>"``) and runs a batch's novelty on its own thread (Numba releases the GIL) while the
event loop scores the rest of the batch.

The state is ``[offset, output]`` pairs, so a replayed message (after a crash or a rebalance, from the committed
offset on) sees what it saw the first time: a batch compares each generation only with outputs from earlier
offsets, and the state keeps every output from the committed offset on plus the ``novelty_k`` before it
(:mod:`streams.faust_ext.own_offsets`), so nothing a replay needs was trimmed.

Example (a plain dict stands in for the Faust table, small objects for the Faust events of partition 0)::

    >>> import asyncio
    >>> from types import SimpleNamespace
    >>> from streams.sdk.schema import validate_event
    >>> gen = {"type": "generation", "session_id": "s", "app": "chat", "route": "answer", "model": "m",
    ...        "prompt_version": "v1", "ts": "2026-11-25T10:00:00Z", "input": "hi"}
    >>> generations = [validate_event({**gen, "event_id": f"e{i}", "generation_id": f"g{i}", "output": out})
    ...                for i, out in enumerate(["Hello there!", "Hello there!", "Goodbye."])]
    >>> class Event:
    ...     def __init__(self, offset):
    ...         self.message = SimpleNamespace(partition=0, offset=offset)
    >>> recent = {}
    >>> stage = NoveltyStage(recent, k=32, counters=WorkerCounters(), level="char")
    >>> async def one_batch():
    ...     job = stage.start([Event(7), Event(8), Event(9)], generations, [0, 1, 2])
    ...     values = await stage.result(job, generations)
    ...     stage.save(job)
    ...     return values
    >>> values = asyncio.run(one_batch())
    >>> values[0], values[1], round(values[2], 2)  # nothing before the first; the second repeats it
    (None, 0.0, 0.83)
    >>> recent
    {'0:chat:answer': [[7, 'Hello there!'], [8, 'Hello there!'], [9, 'Goodbye.']]}
    >>> asyncio.run(one_batch()) == values  # the batch replayed: the same values, the same state
    True
    >>> len(recent['0:chat:answer'])
    3
    >>> [(s.generation_id, s.metric, s.value) for s in novelty_scores(generations[1], values[1])]
    [('g1', 'novelty', 0.0)]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from faust.types import EventT

from metrics.novelty import MAX_CHARS, Level, RecentOutputs, novelty, novelty_many
from streams.faust_ext.current_event import set_current_event
from streams.sdk.schema import GenerationEvent
from streams.worker.counters import WorkerCounters
from streams.worker.scoring import GenerationRef, Score, scores_of

log = logging.getLogger("evalstream.worker")

Values = dict[str, tuple[list[float | None], RecentOutputs]]  # per state key: values in order, new state
Entry = tuple[int, str]  # (source offset, output)


def _entries(stored: Sequence[Any] | None) -> list[Entry]:
    """A stored state as (offset, output) pairs; a plain output (stored before offsets were kept) comes first."""
    return [(-1, item) if isinstance(item, str) else (int(item[0]), str(item[1])) for item in stored or ()]


@dataclass
class NoveltyJob:
    """A batch's novelty, running on the novelty thread."""

    indices: dict[str, list[int]]  # per state key, its generations (indices in the batch's generations)
    owners: dict[str, EventT]  # per state key, an event of its partition (whose changelog the state goes to)
    states: dict[str, RecentOutputs]  # per state key, the recent outputs before the batch's first generation
    stored: dict[str, list[Entry]]  # per state key, the state as read, then with the batch's outputs
    done: asyncio.Future[Values]


class NoveltyStage:
    """Starts a batch's novelty on its thread, collects it (one by one if the batch call fails), saves the state."""

    def __init__(
        self,
        recent: MutableMapping[str, Any],
        k: int,
        counters: WorkerCounters,
        level: Level = "word",
        committed: Callable[[int], int | None] = lambda partition: None,
    ) -> None:
        self.recent = recent
        self.committed = committed  # per partition, where a replay would start (None: unknown, keep everything)
        self.k = k
        self.level = level
        self.counters = counters
        self._thread = ThreadPoolExecutor(1, "evalstream-novelty")

    def start(
        self, batch: Sequence[EventT], generations: Sequence[GenerationEvent], index_of: Sequence[int | None]
    ) -> NoveltyJob:
        """Begin the novelty of ``generations`` (``index_of[m]``: message m's index among them, or None).

        The state is read here, after the previous batch wrote its own back. Every generation joins the state,
        also one that a later step sends to the dead-letter topic (a bug, not bad input: input errors are found
        when the batch is parsed).
        """
        indices: dict[str, list[int]] = {}
        owners: dict[str, EventT] = {}
        stored: dict[str, dict[int, str]] = {}
        states: dict[str, RecentOutputs] = {}
        for ev, index in zip(batch, index_of, strict=True):
            if index is not None:
                gen = generations[index]
                key = f"{ev.message.partition}:{gen.app}:{gen.route}"
                if key not in indices:
                    indices[key], stored[key] = [], dict(_entries(self.recent.get(key)))
                    # what the key's first generation sees (the same in a replay: only earlier offsets)
                    earlier = tuple(t for o, t in sorted(stored[key].items()) if o < ev.message.offset)
                    states[key] = RecentOutputs(self.k, earlier[-self.k :])
                indices[key].append(index)
                owners[key] = ev
                stored[key][ev.message.offset] = gen.output[:MAX_CHARS]
        work = [(key, [generations[i].output[:MAX_CHARS] for i in rows], states[key]) for key, rows in indices.items()]

        def run() -> Values:
            return {key: novelty_many(outputs, state, level=self.level) for key, outputs, state in work}

        done = asyncio.get_running_loop().run_in_executor(self._thread, run)
        return NoveltyJob(indices, owners, states, {key: sorted(e.items()) for key, e in stored.items()}, done)

    async def result(self, job: NoveltyJob, generations: Sequence[GenerationEvent]) -> dict[int, float | None]:
        """Novelty per generation index; output by output if the batch call failed."""
        try:
            done = await job.done
        except Exception:
            log.exception("novelty of a batch failed; computing it output by output")
            done = {
                key: self._one_by_one(job.states[key], [generations[i] for i in rows])
                for key, rows in job.indices.items()
            }
        return {i: v for key, indices in job.indices.items() for i, v in zip(indices, done[key][0], strict=True)}

    def _one_by_one(
        self, state: RecentOutputs, generations: list[GenerationEvent]
    ) -> tuple[list[float | None], RecentOutputs]:
        values: list[float | None] = []
        for gen in generations:
            try:
                values.append(novelty(gen.output[:MAX_CHARS], state, self.level))
            except Exception as exc:
                log.error("generation %s stored without novelty: %s", gen.generation_id, exc)
                self.counters.novelty_errors += 1
                values.append(None)
            state = state.update(gen.output[:MAX_CHARS])
        return values, state

    def save(self, job: NoveltyJob) -> None:
        """Write the new states back (each to its partition's changelog): every output from the partition's
        committed offset on, and the ``k`` before it."""
        for key, entries in job.stored.items():
            owner = job.owners[key]
            committed = self.committed(owner.message.partition)
            if committed is not None:
                older = [e for e in entries if e[0] < committed][-self.k :]
                entries = older + [e for e in entries if e[0] >= committed]
            set_current_event(owner)
            self.recent[key] = [list(e) for e in entries]


def novelty_scores(event: GenerationEvent, value: float | None) -> list[Score]:
    """The ``novelty`` score of a generation (nothing when there was no earlier output to compare with)."""
    return scores_of(event, GenerationRef.of(event), {"novelty": value})
