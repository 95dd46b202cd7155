"""Novelty in the worker: each generation against the recent outputs of its app and route on its partition.

The pure computation is :mod:`metrics.novelty`; this module keeps its state in a Faust table (key
``"<partition>:<app>:<route>"``, the last ``novelty_k`` outputs) and runs a batch's novelty on its own thread
(Numba releases the GIL) while the event loop scores the rest of the batch.

Example (a plain dict stands in for the Faust table, small objects for the Faust events of partition 0)::

    >>> import asyncio
    >>> from types import SimpleNamespace
    >>> from streams.sdk.schema import validate_event
    >>> gen = {"type": "generation", "session_id": "s", "app": "chat", "route": "answer", "model": "m",
    ...        "prompt_version": "v1", "ts": "2026-11-25T10:00:00Z", "input": "hi"}
    >>> generations = [validate_event({**gen, "event_id": f"e{i}", "generation_id": f"g{i}", "output": out})
    ...                for i, out in enumerate(["Hello there!", "Hello there!", "Goodbye."])]
    >>> class Event:
    ...     message = SimpleNamespace(partition=0)
    >>> recent = {}
    >>> stage = NoveltyStage(recent, k=32, counters=WorkerCounters(), level="char")
    >>> async def one_batch():
    ...     job = stage.start([Event(), Event(), Event()], generations, [0, 1, 2])
    ...     values, states = await stage.result(job, generations)
    ...     stage.save(job, states)
    ...     return values
    >>> values = asyncio.run(one_batch())
    >>> values[0], values[1], round(values[2], 2)  # nothing before the first; the second repeats it
    (None, 0.0, 0.83)
    >>> recent
    {'0:chat:answer': ['Hello there!', 'Hello there!', 'Goodbye.']}
    >>> [(s.generation_id, s.metric, s.value) for s in novelty_scores(generations[1], values[1])]
    [('g1', 'novelty', 0.0)]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from faust.types import EventT

from metrics.novelty import Level, RecentOutputs, novelty, novelty_many
from streams.faust_ext.current_event import set_current_event
from streams.sdk.schema import GenerationEvent
from streams.worker.counters import WorkerCounters
from streams.worker.scoring import GenerationRef, Score, scores_of

log = logging.getLogger("evalstream.worker")

Values = dict[str, tuple[list[float | None], RecentOutputs]]  # per state key: values in order, new state


@dataclass
class NoveltyJob:
    """A batch's novelty, running on the novelty thread."""

    indices: dict[str, list[int]]  # per state key, its generations (indices in the batch's generations)
    owners: dict[str, EventT]  # per state key, an event of its partition (whose changelog the state goes to)
    states: dict[str, RecentOutputs]  # per state key, the recent outputs before the batch
    done: asyncio.Future[Values]


class NoveltyStage:
    """Starts a batch's novelty on its thread, collects it (one by one if the batch call fails), saves the state."""

    def __init__(
        self, recent: MutableMapping[str, Any], k: int, counters: WorkerCounters, level: Level = "word"
    ) -> None:
        self.recent = recent
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
        for ev, index in zip(batch, index_of, strict=True):
            if index is not None:
                gen = generations[index]
                key = f"{ev.message.partition}:{gen.app}:{gen.route}"
                indices.setdefault(key, []).append(index)
                owners[key] = ev
        states = {key: RecentOutputs(self.k, tuple(self.recent.get(key) or ())) for key in indices}
        work = [(key, [generations[i].output for i in rows], states[key]) for key, rows in indices.items()]

        def run() -> Values:
            return {key: novelty_many(outputs, state, level=self.level) for key, outputs, state in work}

        return NoveltyJob(indices, owners, states, asyncio.get_running_loop().run_in_executor(self._thread, run))

    async def result(
        self, job: NoveltyJob, generations: Sequence[GenerationEvent]
    ) -> tuple[dict[int, float | None], dict[str, RecentOutputs]]:
        """Novelty per generation index and the new state per key; output by output if the batch call failed."""
        try:
            done = await job.done
        except Exception:
            log.exception("novelty of a batch failed; computing it output by output")
            done = {
                key: self._one_by_one(job.states[key], [generations[i] for i in rows])
                for key, rows in job.indices.items()
            }
        by_index = {i: v for key, indices in job.indices.items() for i, v in zip(indices, done[key][0], strict=True)}
        return by_index, {key: state for key, (_, state) in done.items()}

    def _one_by_one(
        self, state: RecentOutputs, generations: list[GenerationEvent]
    ) -> tuple[list[float | None], RecentOutputs]:
        values: list[float | None] = []
        for gen in generations:
            try:
                values.append(novelty(gen.output, state, self.level))
            except Exception as exc:
                log.error("generation %s stored without novelty: %s", gen.generation_id, exc)
                self.counters.novelty_errors += 1
                values.append(None)
            state = state.update(gen.output)
        return values, state

    def save(self, job: NoveltyJob, states: dict[str, RecentOutputs]) -> None:
        """Write the new states back (each to its partition's changelog)."""
        for key, state in states.items():
            set_current_event(job.owners[key])
            self.recent[key] = list(state.outputs)


def novelty_scores(event: GenerationEvent, value: float | None) -> list[Score]:
    """The ``novelty`` score of a generation (nothing when there was no earlier output to compare with)."""
    return scores_of(event, GenerationRef.of(event), {"novelty": value})
