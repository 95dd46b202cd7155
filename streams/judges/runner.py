"""``evalstream judge``: LLM judges over the generations on Kafka, off the scoring path.

A consumer of its own (group ``<EVALSTREAM_WORKER_ID>-judge``) reads the events topic; for each generation without
an error, each judge that applies to its app and route and samples it (a hash of the generation id: a replay
judges the same ones) asks the provider, unless its cache already holds the answer for this judge version and
these texts (a replay, or the same texts again, never pays twice), within the judge's request rate and daily
token budget (over it: skipped and counted). The verdict goes back to the events topic as a ``judgement`` event
(same session key, an id derived from the judge version and the generation), which the worker scores as
``judge_<name>`` with the generation's labels and stores with its reason. Offsets are committed once a batch's
judgements are acknowledged by Kafka: a crash re-reads them, and the cache answers.

Example (the runner with a stand-in provider that always answers 0.9; no Kafka)::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from metrics.judges import Judge
    >>> from streams.sdk.schema import validate_event
    >>> class Fixed:
    ...     calls = 0
    ...     def complete(self, prompt, model=None):
    ...         Fixed.calls += 1
    ...         return Completion('{"score": 0.9, "reason": "fine"}', 10, 5, 1)
    >>> runner = JudgeRunner([Judge("helpful", "Q: {input} A: {output}")], Fixed(),
    ...                      JudgeCache(Path(tempfile.mkdtemp()) / "cache.sqlite"))
    >>> gen = validate_event({"type": "generation", "event_id": "e1", "ts": "2026-11-30T10:00:00Z",
    ...     "session_id": "s", "app": "bot", "generation_id": "g1", "route": "r", "model": "m",
    ...     "prompt_version": "v1", "input": "hi", "output": "hello"})
    >>> [(j["judge"], j["score"], j["reason"]) for j in runner.judge(gen)], Fixed.calls
    ([('helpful', 0.9, 'fine')], 1)
    >>> _ = runner.judge(gen); Fixed.calls, runner.counters.cached
    (1, 1)
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from metrics.judges import Judge, parse_answer
from streams.judges.client import Completion, DailyBudget, JudgeCallError, RateLimit
from streams.sdk.schema import GenerationEvent

log = logging.getLogger("evalstream.judge")


class Provider(Protocol):
    def complete(self, prompt: str, model: str | None = None) -> Completion: ...


@dataclass
class JudgeCounters:
    judged: int = 0  # judgements sent (parsed or not)
    cached: int = 0  # answered from the cache: no request, no tokens
    requests: int = 0
    tokens: int = 0
    unparsed: int = 0  # answers without a readable score: stored raw
    over_budget: int = 0  # sampled generations skipped because the judge's daily tokens were spent
    errors: int = 0  # the provider kept failing or refused: not judged (logged)


class JudgeCache:
    """Answers by (judge version, input, output, context), in SQLite on disk, so a restart or replay reuses them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS answers "
            "(key TEXT PRIMARY KEY, text TEXT, tokens_in INTEGER, tokens_out INTEGER)"
        )
        self._lock = threading.Lock()

    @staticmethod
    def key(judge: Judge, gen: GenerationEvent) -> str:
        context = [p.text for p in gen.context or ()]
        material = json.dumps([judge.version, gen.input, gen.output, context], ensure_ascii=False)
        return hashlib.blake2b(material.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self.db.execute("SELECT text, tokens_in, tokens_out FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else Completion(row[0], row[1], row[2], 0)

    def put(self, key: str, answer: Completion) -> None:
        with self._lock:
            self.db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                (key, answer.text, answer.tokens_in, answer.tokens_out),
            )
            self.db.commit()


class JudgeRunner:
    def __init__(
        self, judges: list[Judge], provider: Provider, cache: JudgeCache, default_model: str = "",
        prices: dict[str, tuple[float, float]] | None = None,
    ) -> None:  # fmt: skip
        self.judges, self.provider, self.cache = judges, provider, cache
        self.default_model, self.prices = default_model, prices or {}
        self.limits = {j.name: RateLimit(j.requests_per_minute) for j in judges}
        self.budgets = {j.name: DailyBudget(j.tokens_per_day) for j in judges}
        self.counters = JudgeCounters()

    def judge(self, gen: GenerationEvent) -> list[dict[str, Any]]:
        """The ``judgement`` events for one generation (none when no judge applies, samples it, or can pay)."""
        out = []
        for judge in self.judges:
            if gen.error or not judge.applies_to(gen.app, gen.route) or not judge.sampled(gen.generation_id):
                continue
            answer = self._answer(judge, gen)
            if answer is not None:
                out.append(self._event(judge, gen, answer))
        return out

    def _answer(self, judge: Judge, gen: GenerationEvent) -> Completion | None:
        key = JudgeCache.key(judge, gen)
        cached = self.cache.get(key)
        if cached is not None:
            self.counters.cached += 1
            return cached
        budget = self.budgets[judge.name]
        if not budget.allows():
            self.counters.over_budget += 1
            return None
        self.limits[judge.name].acquire()
        prompt = judge.render(gen.input, gen.output, [p.text for p in gen.context or ()])
        try:
            answer = self.provider.complete(prompt, judge.model)
        except JudgeCallError as exc:
            self.counters.errors += 1
            log.warning("judge %s, generation %s: %s", judge.name, gen.generation_id, exc)
            return None
        self.counters.requests += 1
        used = (answer.tokens_in or 0) + (answer.tokens_out or 0)
        budget.spend(used)
        self.counters.tokens += used
        self.cache.put(key, answer)
        return answer

    def _event(self, judge: Judge, gen: GenerationEvent, answer: Completion) -> dict[str, Any]:
        score, label, reason = parse_answer(answer.text, judge.labels or None)
        parsed = score is not None
        price = self.prices.get(judge.model or self.default_model)
        cost = None
        if price is not None:  # a cached answer cost nothing this time
            cost = 0.0 if answer.attempts == 0 else ((answer.tokens_in or 0) * price[0] + (answer.tokens_out or 0) *
                                                     price[1]) / 1e6  # fmt: skip
        self.counters.judged += 1
        self.counters.unparsed += not parsed
        event = {
            "type": "judgement", "event_id": f"judge-{judge.name}-{judge.version}-{gen.generation_id}",
            "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "session_id": gen.session_id, "app": gen.app,
            "generation_id": gen.generation_id, "judge": judge.name, "judge_version": judge.version, "score": score,
            "label": label, "reason": reason, "parsed": parsed, "raw_answer": None if parsed else answer.text,
            "tokens_in": answer.tokens_in, "tokens_out": answer.tokens_out, "cost_usd": cost,
        }  # fmt: skip
        return {k: v for k, v in event.items() if v is not None}

    def report(self) -> dict[str, int]:
        return asdict(self.counters)
