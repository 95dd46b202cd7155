"""Benchmark: what the RAG scores cost the embedding stage, against what their texts cost the model.

The same generations (hh-rlhf turns as input and output, ``--data``; generated texts without it) go through the
worker's embedding stage twice, side by side in each round: without a context, and with ``--passages`` retrieved
passages each, drawn from a pool of ``--pool`` passages (so they repeat across generations, as retrieval results
do, and the encoder's cache serves the repeats). Next to that, a raw encode (the same backend, one call) of the
texts each run gives the model: outputs and inputs; plus the distinct passages and the outputs' sentences
(metrics.rag.sentences) with contexts.

Target: the stage's slowdown with contexts is no larger than the raw encode's (ratio of the two ≤ 1.1): the RAG
scores cost the texts they add, nothing more.

    python bench/rag.py [--generations 2000] [--flush 500] [--passages 4] [--pool 400] [--repeats 2] [--data PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.rag import sentences as split_sentences

_spec = importlib.util.spec_from_file_location("bench_embeddings", Path(__file__).with_name("embeddings.py"))
assert _spec is not None and _spec.loader is not None
emb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(emb)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=2000)
    parser.add_argument("--flush", type=int, default=500)
    parser.add_argument("--passages", type=int, default=4)
    parser.add_argument("--pool", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", type=Path, default=emb.SHARED)
    args = parser.parse_args()
    if args.data != emb.SHARED and not args.data.exists():
        parser.error(f"--data {args.data}: no such file")
    from streams.embedding.encoder import load_encoder

    texts, source = emb.sentences(2 * args.generations + args.pool, args.data)
    pool, texts = texts[: args.pool], texts[args.pool :]
    rng = random.Random(0)
    contexts = [rng.sample(pool, args.passages) for _ in range(args.generations)]
    encoder = load_encoder("auto")
    batch = 32
    plain = texts[: 2 * args.generations]
    outputs = plain[1::2]
    distinct = list(dict.fromkeys(p for ctx in contexts for p in ctx))
    said = [s for out in outputs for s in split_sentences(out)]
    with_context = plain + distinct + said
    print(f"data: {source}; {args.generations:,} generations, {args.passages} passages each from a pool of "
          f"{args.pool} ({len(distinct)} distinct used), {len(said):,} output sentences")  # fmt: skip
    print(f"encoder: {encoder.name}")
    raw_plain, raw_context = emb.alternate([lambda: encoder.encode(plain), lambda: encoder.encode(with_context)],
                                           args.repeats)  # fmt: skip
    stage_plain, stage_context = [], []
    for r in range(args.repeats):
        runs = [("plain", None), ("context", lambda i: contexts[i])]
        for name, context_of in runs if r % 2 == 0 else runs[::-1]:
            started = time.perf_counter()
            result = emb.stage("auto", texts, batch, args.generations, args.flush, context_of=context_of)
            rate = result["rate"] / 2  # generations per second
            (stage_plain if name == "plain" else stage_context).append(rate)
            print(f"round {r + 1} {name}: {rate:,.0f} generations/s ({time.perf_counter() - started:.0f} s)")
    raw_slowdown = raw_context / raw_plain
    stage_slowdown = statistics.median(stage_plain) / statistics.median(stage_context)
    ratio = stage_slowdown / raw_slowdown
    print(f"raw encode, one call: {len(plain):,} texts {raw_plain:.2f} s; {len(with_context):,} texts "
          f"{raw_context:.2f} s: {raw_slowdown:.2f}x the time")  # fmt: skip
    print(f"stage: {statistics.median(stage_plain):,.0f} generations/s without context, "
          f"{statistics.median(stage_context):,.0f} with: {stage_slowdown:.2f}x the time")  # fmt: skip
    print(f"stage slowdown / raw slowdown: {ratio:.2f} (target <= 1.1: {'met' if ratio <= 1.1 else 'NOT MET'})")
    return 0 if ratio <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
