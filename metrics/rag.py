"""Retrieval signals from embeddings: did retrieval find what the question needed, and does the answer stand on it?

- ``context_relevance``: the best cosine between the input and a retrieved passage (``context_relevance_mean``:
  the mean over the passages), i.e. whether at least one passage matches the question.
- ``groundedness``: for each sentence of the output, its best cosine to a passage, averaged over the sentences:
  how much of what the answer says is close to something in the context.

Sentences (:func:`sentences`): the output split after ``.``, ``!``, ``?`` (and their full-width forms) followed by
white space, and at line breaks; pieces under 3 characters are dropped; at most ``limit`` (the first ones) are kept,
so a long answer costs a bounded number of extra texts to embed.

Example (unit vectors along axes)::

    >>> e = np.eye(4, dtype=np.float32)
    >>> context_relevance(e[0], e[[0, 1]])
    (1.0, 0.5)
    >>> groundedness(e[[0, 2]], e[[0, 1]])  # one sentence of two is in the context
    0.5
    >>> sentences("Refunds take 5 days. Contact us!\\nThanks... ok")  # "ok": under 3 characters
    ['Refunds take 5 days.', 'Contact us!', 'Thanks...']
"""

from __future__ import annotations

import re

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")


def sentences(text: str, limit: int = 32) -> list[str]:
    """The output's sentences, as the module describes, at most ``limit``."""
    out = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if len(piece) >= 3:
            out.append(piece)
            if len(out) == limit:
                break
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def context_relevance(query: np.ndarray, passages: np.ndarray) -> tuple[float, float]:
    """(max, mean) cosine of the input's vector to the passages' (at least one passage)."""
    sims = _unit(passages) @ _unit(query)
    return float(sims.max()), float(sims.mean())


def groundedness(sentence_vectors: np.ndarray, passages: np.ndarray) -> float:
    """The mean, over the output's sentences, of each one's best cosine to a passage."""
    sims = _unit(sentence_vectors) @ _unit(passages).T
    return float(sims.max(axis=1).mean())
