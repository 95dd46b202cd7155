"""The embedding stage: one batched encode per worker batch, then the semantic scores of each generation.

For every generation without ``error``, with the references of its app and route (:mod:`streams.worker.evalconfig`):

- ``semantic_similarity``: max cosine of the output to the route's example sentences (only when it has some);
- ``relevance``: cosine of the input and the output (only when the input is not empty);
- ``topic_<name>``: max cosine of the output to each banned topic's exemplars, and ``guardrail_<name>`` (1/0,
  cosine >= the topic's threshold); ``guardrail_flag`` is 1 when any topic tripped (emitted when the route has
  topics);
- with a ``context`` (retrieved passages): ``context_relevance`` (best cosine of the input to a passage),
  ``context_relevance_mean`` (mean over the passages) and ``groundedness`` (each output sentence's best cosine to
  a passage, averaged): :mod:`metrics.rag`. Passages and sentences are embedded in the same encoder call as the
  outputs and inputs; repeated passages come from the cache;
- ``quality``: the weighted mean of ``semantic_similarity``, ``novelty``, ``relevance``, ``context_relevance`` and
  ``groundedness`` with the config's weights, over the components present (weights renormalized); absent when
  none is.

Each generation's output (and input) embedding goes to the ``embeddings`` dataset as int8 (direction only).

Example (a stand-in for the model whose vector of a text is the axis of its first letter; no config)::

    >>> from streams.sdk.schema import validate_event
    >>> class FirstLetter:
    ...     name, dim = "first-letter", 384
    ...     def encode(self, texts):
    ...         vectors = np.zeros((len(texts), 384), np.float32)
    ...         vectors[range(len(texts)), [ord(t[0]) for t in texts]] = 1
    ...         return vectors
    >>> encoder = CachedEncoder(FirstLetter())
    >>> scorer = EmbeddingScorer(encoder, ReferenceBook(None, encoder))
    >>> gen = {"type": "generation", "session_id": "s", "app": "chat", "route": "answer", "model": "m",
    ...        "prompt_version": "v1", "ts": "2026-11-25T10:00:00Z", "input": "Refund policy?"}
    >>> on_topic = validate_event({**gen, "event_id": "e1", "generation_id": "g1", "output": "Refunds take 5 days."})
    >>> off_topic = validate_event({**gen, "event_id": "e2", "generation_id": "g2", "output": "Nice weather."})
    >>> done = scorer.score([(on_topic, 0.5), (off_topic, None)])
    >>> [[(s.metric, s.value) for s in d.scores] for d in done]  # default quality weights: similarity, novelty
    [[('relevance', 1.0), ('quality', 0.5)], [('relevance', 0.0)]]
    >>> done[0].row["encoder"], done[0].row["output_embedding"].dtype, done[0].row["output_embedding"].shape
    ('first-letter', dtype('int8'), (384,))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from metrics.rag import context_relevance, groundedness, sentences
from metrics.similarity import EMBEDDING_DIM, composite, max_cosine, rowwise_cosine, to_int8
from streams.embedding.cache import CachedEncoder
from streams.sdk.schema import GenerationEvent
from streams.worker.counters import WorkerCounters
from streams.worker.evalconfig import ReferenceBook, References
from streams.worker.scoring import GenerationRef, Score, scores_of

log = logging.getLogger("evalstream.worker")


@dataclass
class Encoded:
    """Embeddings of a list of generations: outputs ``(n, d)``, inputs ``(n, d)`` (zero rows where absent), and per
    generation with a context its passages' and its output sentences' (None without one)."""

    outputs: np.ndarray
    inputs: np.ndarray
    has_input: np.ndarray
    references: dict[tuple[str, str], References]  # of every app and route in the list
    passages: list[np.ndarray | None] | None = None
    sentences: list[np.ndarray | None] | None = None

    def take(self, rows: Sequence[int]) -> Encoded:
        idx = np.asarray(rows, dtype=np.int64)
        passages = None if self.passages is None else [self.passages[i] for i in rows]
        sentences = None if self.sentences is None else [self.sentences[i] for i in rows]
        return Encoded(self.outputs[idx], self.inputs[idx], self.has_input[idx], self.references, passages, sentences)


@dataclass
class Embedded:
    """The stage's output for one generation."""

    scores: list[Score]
    row: dict[str, Any]


class EmbeddingScorer:
    def __init__(
        self, encoder: CachedEncoder, book: ReferenceBook, embed_inputs: bool = True, rag_groundedness: bool = True
    ) -> None:
        if encoder.dim != EMBEDDING_DIM:  # the embeddings dataset stores INT8[384]
            raise ValueError(f"the encoder makes {encoder.dim}-dimensional vectors; the sinks store {EMBEDDING_DIM}")
        self.encoder = encoder
        self.book = book
        self.embed_inputs = embed_inputs
        self.rag_groundedness = rag_groundedness  # embed the output's sentences of generations with a context

    def score(self, generations: Sequence[tuple[GenerationEvent, float | None]]) -> list[Embedded]:
        """Scores and embedding rows for ``(generation, novelty)`` pairs, in order."""
        return self.finish(generations, self.encode([g for g, _ in generations]))

    def encode(self, generations: Sequence[GenerationEvent]) -> Encoded:
        """The embeddings of the outputs and inputs, in one encoder call (the slow part: run it in a thread)."""
        self.book.refresh()
        texts = [g.output for g in generations]
        has_input = np.array([self.embed_inputs and bool(g.input) for g in generations], dtype=bool)
        texts += [g.input for g, use in zip(generations, has_input, strict=True) if use]
        n, n_inputs = len(generations), int(has_input.sum())
        # retrieved passages and the output's sentences, for the RAG scores: (start, passages, sentences) per
        # generation with a context, in the same call
        spans: list[tuple[int, int, int] | None] = []
        for g in generations:
            passages = [p.text for p in g.context or () if p.text.strip()]
            if not passages:
                spans.append(None)
                continue
            said = sentences(g.output) if self.rag_groundedness else []
            spans.append((len(texts), len(passages), len(said)))
            texts += passages + said
        vectors = self.encoder.encode(texts)
        inputs = np.zeros((n, self.encoder.dim), np.float32)
        inputs[has_input] = vectors[n : n + n_inputs]
        contexts = [None if s is None else vectors[s[0] : s[0] + s[1]] for s in spans]
        said_vectors = [None if s is None or not s[2] else vectors[s[0] + s[1] : s[0] + s[1] + s[2]] for s in spans]
        # references too, here: the encoder (and its cache) is only ever used from this thread
        references = {(g.app, g.route): self.book.references(g.app, g.route) for g in generations}
        return Encoded(vectors[:n], inputs, has_input, references, contexts, said_vectors)

    def finish(self, generations: Sequence[tuple[GenerationEvent, float | None]], encoded: Encoded) -> list[Embedded]:
        """The scores from :meth:`encode`'s vectors (cheap: a few matrix products per app and route)."""
        n = len(generations)
        if n == 0:
            return []
        outputs, has_input = encoded.outputs, encoded.has_input
        relevance = rowwise_cosine(outputs, encoded.inputs)
        stored_out, stored_in = to_int8(outputs), to_int8(encoded.inputs)
        # per app and route: one matrix product for the examples and one per topic
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (gen, _) in enumerate(generations):
            groups.setdefault((gen.app, gen.route), []).append(i)
        values: list[dict[str, float | None]] = [{} for _ in range(n)]
        weights: list[dict[str, float]] = [{}] * n
        for (app, route), rows in groups.items():
            refs = encoded.references[(app, route)]
            block = outputs[rows]
            sem = max_cosine(block, refs.examples)
            topic_sims = [(topic, max_cosine(block, exemplars)) for topic, exemplars in refs.topics]
            for j, i in enumerate(rows):
                v = values[i]
                weights[i] = refs.resolved.weights
                v["semantic_similarity"] = None if sem is None else float(sem[j])
                v["relevance"] = float(relevance[i]) if has_input[i] else None
                tripped = 0.0
                for topic, sims in topic_sims:
                    similarity = float(sims[j])  # type: ignore[index]
                    hit = 1.0 if similarity >= topic.threshold else 0.0
                    v[f"topic_{topic.name}"] = similarity
                    v[f"guardrail_{topic.name}"] = hit
                    tripped = max(tripped, hit)
                if topic_sims:
                    v["guardrail_flag"] = tripped
                passages = encoded.passages[i] if encoded.passages else None
                if passages is not None:
                    if has_input[i]:
                        v["context_relevance"], v["context_relevance_mean"] = context_relevance(
                            encoded.inputs[i], passages
                        )
                    said = encoded.sentences[i] if encoded.sentences else None
                    if said is not None:
                        v["groundedness"] = groundedness(said, passages)
        now = datetime.now(UTC).replace(tzinfo=None)
        results = []
        for i, (gen, novelty) in enumerate(generations):
            v = values[i]
            parts = {"semantic_similarity": v["semantic_similarity"], "novelty": novelty,
                     "relevance": v["relevance"], "context_relevance": v.get("context_relevance"),
                     "groundedness": v.get("groundedness")}  # fmt: skip
            v["quality"] = composite(parts, weights[i])
            row = {
                "event_id": gen.event_id,
                "generation_id": gen.generation_id,
                "ts": gen.ts_utc,
                "app": gen.app,
                "route": gen.route,
                "model": gen.model,
                "prompt_version": gen.prompt_version,
                "encoder": self.encoder.name,
                "output_embedding": stored_out[i],
                "input_embedding": stored_in[i] if has_input[i] else None,
                "embedded_at": now,
                "index_version": gen.index_version,
            }
            results.append(Embedded(scores_of(gen, GenerationRef.of(gen), v), row))
        return results


class EmbeddingStage:
    """Runs :class:`EmbeddingScorer` for the worker: encodes on one thread, retries, never loses a generation.

    Calls queue up on the one encoder thread in order, so the encoder and its cache are never used from two
    threads at once, and batch N+1's encoding starts the moment N's is done.
    """

    def __init__(self, scorer: EmbeddingScorer, counters: WorkerCounters) -> None:
        self.scorer = scorer
        self.counters = counters
        self._thread = ThreadPoolExecutor(1, "evalstream-encode")

    def start(self, generations: list[GenerationEvent]) -> asyncio.Future[Encoded] | None:
        """Queue the embeddings of ``generations`` (None when there are none)."""
        return self._encode(generations) if generations else None

    def _encode(self, generations: list[GenerationEvent]) -> asyncio.Future[Encoded]:
        return asyncio.get_running_loop().run_in_executor(self._thread, self.scorer.encode, generations)

    async def finish(
        self,
        generations: list[tuple[GenerationEvent, float | None]],
        rows: list[int],
        embedding: asyncio.Future[Encoded],
    ) -> list[Embedded | None]:
        """The results of ``(generation, novelty)`` pairs, whose vectors are rows ``rows`` of ``embedding``.

        If encoding the batch failed, it is encoded once more (an encoder process that died has been replaced
        by then); if that fails too, each generation is encoded alone, and one that still fails gets None (it
        keeps its event and other scores), is logged with the reason and counted in ``embedding_errors``.
        """
        scorer = self.scorer
        vectors: Encoded | None
        try:
            vectors = (await embedding).take(rows)
        except Exception:
            log.exception("embedding a batch of %d generations failed; encoding it again", len(generations))
            try:
                vectors = await self._encode([gen for gen, _ in generations])
            except Exception:
                log.exception("the batch failed again; encoding its %d generations one by one", len(generations))
                vectors = None
        if vectors is not None:
            return list(scorer.finish(generations, vectors))
        results: list[Embedded | None] = []
        for pair in generations:
            try:
                one = await self._encode([pair[0]])
            except Exception as exc:
                log.error("generation %s stored without embedding scores: %s", pair[0].generation_id, exc)
                self.counters.embedding_errors += 1
                results.append(None)
            else:
                results.extend(scorer.finish([pair], one))
        return results
