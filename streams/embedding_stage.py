"""The embedding stage: one batched encode per worker batch, then the semantic scores of each generation.

For every generation without ``error``, with the references of its app and route (:mod:`streams.evalconfig`):

- ``semantic_similarity``: max cosine of the output to the route's example sentences (only when it has some);
- ``relevance``: cosine of the input and the output (only when the input is not empty);
- ``topic_<name>``: max cosine of the output to each banned topic's exemplars, and ``guardrail_<name>`` (1/0,
  cosine >= the topic's threshold); ``guardrail_flag`` is 1 when any topic tripped (emitted when the route has
  topics);
- ``quality``: the weighted mean of ``semantic_similarity``, ``novelty`` and ``relevance`` with the config's
  weights, over the components present (weights renormalized); absent when none is.

Each generation's output (and input) embedding goes to the ``embeddings`` dataset as int8 (direction only).

Example::

    >>> scorer = EmbeddingScorer(CachedEncoder(load_encoder("onnx")), book)  # doctest: +SKIP
    >>> results = scorer.score([(generation_event, novelty_value)])           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from metrics.embedding_cache import CachedEncoder
from metrics.similarity import composite, max_cosine, rowwise_cosine, to_int8
from sinks.records import EMBEDDING_DIM
from streams.evalconfig import ReferenceBook, References
from streams.schema import GenerationEvent
from streams.scoring import GenerationRef, Score, scores_of


@dataclass
class Encoded:
    """Embeddings of a list of generations: outputs ``(n, d)``, inputs ``(n, d)`` (zero rows where absent)."""

    outputs: np.ndarray
    inputs: np.ndarray
    has_input: np.ndarray
    references: dict[tuple[str, str], References]  # of every app and route in the list

    def take(self, rows: Sequence[int]) -> Encoded:
        idx = np.asarray(rows, dtype=np.int64)
        return Encoded(self.outputs[idx], self.inputs[idx], self.has_input[idx], self.references)


@dataclass
class Embedded:
    """The stage's output for one generation."""

    scores: list[Score]
    row: dict[str, Any]


class EmbeddingScorer:
    def __init__(self, encoder: CachedEncoder, book: ReferenceBook, embed_inputs: bool = True) -> None:
        if encoder.dim != EMBEDDING_DIM:  # the embeddings dataset stores INT8[384]
            raise ValueError(f"the encoder makes {encoder.dim}-dimensional vectors; the sinks store {EMBEDDING_DIM}")
        self.encoder = encoder
        self.book = book
        self.embed_inputs = embed_inputs

    def score(self, generations: Sequence[tuple[GenerationEvent, float | None]]) -> list[Embedded]:
        """Scores and embedding rows for ``(generation, novelty)`` pairs, in order."""
        return self.finish(generations, self.encode([g for g, _ in generations]))

    def encode(self, generations: Sequence[GenerationEvent]) -> Encoded:
        """The embeddings of the outputs and inputs, in one encoder call (the slow part: run it in a thread)."""
        self.book.refresh()
        texts = [g.output for g in generations]
        has_input = np.array([self.embed_inputs and bool(g.input) for g in generations], dtype=bool)
        texts += [g.input for g, use in zip(generations, has_input, strict=True) if use]
        vectors = self.encoder.encode(texts)
        n = len(generations)
        inputs = np.zeros((n, self.encoder.dim), np.float32)
        inputs[has_input] = vectors[n:]
        # references too, here: the encoder (and its cache) is only ever used from this thread
        references = {(g.app, g.route): self.book.references(g.app, g.route) for g in generations}
        return Encoded(vectors[:n], inputs, has_input, references)

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
        now = datetime.now(UTC).replace(tzinfo=None)
        results = []
        for i, (gen, novelty) in enumerate(generations):
            v = values[i]
            parts = {"semantic_similarity": v["semantic_similarity"], "novelty": novelty, "relevance": v["relevance"]}
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
            }
            results.append(Embedded(scores_of(gen, GenerationRef.of(gen), v), row))
        return results
