"""Benchmark: what ``EVALSTREAM_EMBED_MAX_TOKENS`` trades on long outputs (speed against fidelity).

all-MiniLM-L6-v2 embeds at most ``max_tokens`` tokens of a text (the model's default 256; its position table
allows 512) and ignores the rest. On long real answers (Arena-Hard, ``../shared/data/``; generated long texts
when absent) this prints, for each ``--max-tokens`` value, with the CPU default backend (onnx-int8):

- texts/s (alternating between the values, median of ``--repeats``), and the ratio to the default 256;
- how close the embedding stays to one of the *whole* answer: the normalized mean of the fp32 embeddings of
  its consecutive 254-token chunks (the whole text, each chunk as the model was trained to read it);
- what that does to the scores the worker derives from it, against the same scores on whole-answer
  embeddings: ``relevance`` (cosine of question and answer), ``semantic_similarity`` (max cosine to the
  example sentences of ``evalconfig.example.toml``), topic similarity (max cosine to a banned topic's
  exemplars; here the questions of every fifth answer stand for the exemplars, so that about a fifth of the
  answers are on a "banned" topic) and how many ``guardrail`` flags (topic similarity >= 0.5) differ.

    python bench/embedding_length.py [--texts 400] [--max-tokens 64,128,256,512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from streams.embedding.encoder import load_encoder
from streams.embedding.model import load_tokenizer
from streams.embedding.onnx_export import default_cache_dir
from streams.worker.evalconfig import EXAMPLE_CONFIG

ARENA = Path(__file__).resolve().parents[2] / "shared" / "data" / "arena-hard-v0.1-answers.jsonl.gz"
CHUNK = 254  # content tokens per chunk: 256 with the two special tokens


def long_texts(n: int) -> tuple[list[tuple[str, str]], str]:
    if ARENA.exists():
        with gzip.open(ARENA, "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        rows.sort(key=lambda r: r["uid"] + r["model"])  # deterministic, both models' answers to each question
        return [(r["prompt"], r["answer"]) for r in rows[:n]], f"Arena-Hard answers ({ARENA})"
    from streams.local.sample import QUESTIONS, SENTENCES

    rng = np.random.default_rng(0)
    pairs = [(str(rng.choice(QUESTIONS)), " ".join(rng.choice(SENTENCES, 25))) for _ in range(n)]
    return pairs, "generated from the sample sentences (Arena-Hard file not found)"


def chunks(tokenizer: object, text: str) -> list[str]:
    """``text`` cut at token boundaries into pieces of at most CHUNK tokens."""
    offsets = [o for o in tokenizer.encode(text, add_special_tokens=False).offsets]  # type: ignore[attr-defined]
    if not offsets:
        return [text]
    out = []
    for i in range(0, len(offsets), CHUNK):
        piece = offsets[i : i + CHUNK]
        out.append(text[piece[0][0] : piece[-1][1]])
    return out


def normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=400, help="answers (with their questions)")
    parser.add_argument("--max-tokens", default="64,128,256,512", help="values to compare, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    values = [int(v) for v in args.max_tokens.split(",")]

    pairs, source = long_texts(args.texts)
    questions = [q for q, _ in pairs]
    answers = [a for _, a in pairs]
    untruncated = load_tokenizer(512)
    untruncated.no_truncation()
    tokens = [len(untruncated.encode(a).ids) for a in answers]
    print(f"data: {source}; {len(answers)} answers, mean {np.mean([len(a) for a in answers]):,.0f} characters, "
          f"tokens mean {np.mean(tokens):.0f}, median {np.median(tokens):.0f}, max {max(tokens)}; "
          f"over 256 tokens: {np.mean(np.array(tokens) > 256):.0%}")  # fmt: skip

    # the whole answer: fp32, chunk by chunk, averaged
    fp32 = load_encoder("onnx", default_cache_dir(), max_tokens=256)
    pieces = [chunks(untruncated, a) for a in answers]
    flat = fp32.encode([p for ps in pieces for p in ps])
    whole = np.empty((len(answers), flat.shape[1]), np.float32)
    at = 0
    for i, ps in enumerate(pieces):
        whole[i] = normalize(flat[at : at + len(ps)].mean(0))
        at += len(ps)

    config = tomllib.loads(EXAMPLE_CONFIG.read_text())
    examples = [e for app in config["apps"].values() for e in app.get("examples", [])]
    exemplars = [q[:300] for q in questions[::5]]
    refs_examples, refs_topics, q_vectors = fp32.encode(examples), fp32.encode(exemplars), fp32.encode(questions)

    def scores(vectors: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "relevance": np.einsum("ij,ij->i", vectors, q_vectors),
            "similarity": (vectors @ refs_examples.T).max(1),
            "topic": (vectors @ refs_topics.T).max(1),
        }

    truth = scores(whole)
    encoders = {k: load_encoder("onnx-int8", default_cache_dir(), max_tokens=k) for k in values}
    for enc in encoders.values():
        enc.encode(answers[:32])  # warm
    times: dict[int, list[float]] = {k: [] for k in values}
    for r in range(args.repeats):
        for k in values if r % 2 == 0 else values[::-1]:
            started = time.perf_counter()
            encoders[k].encode(answers)
            times[k].append(time.perf_counter() - started)
    rate = {k: len(answers) / statistics.median(t) for k, t in times.items()}
    base = rate.get(256)

    print(f"\nonnx-int8 on {os.cpu_count()} CPU cores; scores against those of whole-answer fp32 embeddings")
    print("| max tokens | texts/s | vs 256 | cosine to whole: mean | min | relevance mean abs diff | "
          "similarity mean abs diff | topic mean abs diff | guardrail flags that differ |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for k in values:
        vectors = encoders[k].encode(answers)
        cos = np.einsum("ij,ij->i", vectors, whole)
        got = scores(vectors)
        diff = {name: float(np.abs(got[name] - truth[name]).mean()) for name in truth}
        flips = int(((got["topic"] >= 0.5) != (truth["topic"] >= 0.5)).sum())
        ratio = f"{rate[k] / base:.2f}" if base else ""
        print(
            f"| {k} | {rate[k]:,.0f} | {ratio} | {cos.mean():.4f} | {cos.min():.4f} | {diff['relevance']:.4f} | "
            f"{diff['similarity']:.4f} | {diff['topic']:.4f} | {flips} of {len(answers)} |"
        )
    flagged = int((truth["topic"] >= 0.5).sum())
    print(f"\nwhole-answer guardrail flags (topic similarity >= 0.5): {flagged} of {len(answers)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
