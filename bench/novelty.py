"""Benchmark: novelty over words (the default) against novelty over characters, on short and long real outputs.

For each data set (hh-rlhf last assistant turns; Arena-Hard answers; both from ``../shared/data/``, skipped
when absent) it prints:

1. cost: :func:`metrics.novelty.novelty_many` on one thread (as the worker runs it), each output against the
   32 before it, per output, word level and character level, alternating, median of ``--repeats``; and the
   word-level distances against rapidfuzz ``cpdist(workers=-1)`` on the same pairs of token lists (the
   reference gets its lists already split; ours includes the splitting), with a check that all agree;
2. values on the real stream: mean of each level, and how the two agree (Pearson, Spearman);
3. near-repeats: the stream again with a fifth of its outputs replaced by a variant of one of the 32 before
   (5-50% of the words inserted, deleted or replaced, or 2-20% of the characters mistyped): how well each
   level tells those from fresh outputs (ROC AUC of ``-novelty``; 1.0 = every near-repeat scores lower than
   every fresh output).

    python bench/novelty.py [--outputs 600] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.levenshtein import warm_up, word_distance_index_pairs
from metrics.novelty import RecentOutputs, novelty_many
from streams.local.sample import user_edit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_sets(n: int) -> list[tuple[str, list[str]]]:
    out = []
    short = SHARED / "hh-rlhf-harmless-base-test.jsonl.gz"
    if short.exists():
        texts = []
        with gzip.open(short, "rt", encoding="utf-8") as fh:
            for line in fh:
                turns = re.split(r"\n\nAssistant: ", json.loads(line)["chosen"])
                if len(turns) > 1 and turns[-1].strip():
                    texts.append(turns[-1].strip())
        out.append(("short", texts[:n]))
    long = SHARED / "arena-hard-v0.1-answers.jsonl.gz"
    if long.exists():
        with gzip.open(long, "rt", encoding="utf-8") as fh:
            out.append(("long", [json.loads(line)["answer"] for line in fh][:n]))
    return out


def ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    return r


def auc(near: np.ndarray, fresh: np.ndarray) -> float:
    """P(a near-repeat's novelty < a fresh output's), ties counting half (Mann-Whitney)."""
    return float(((near[:, None] < fresh[None, :]) + 0.5 * (near[:, None] == fresh[None, :])).mean())


def typos(text: str, rng: random.Random, share: float) -> str:
    chars = list(text)
    for _ in range(max(1, int(len(chars) * share))):
        chars[rng.randrange(len(chars))] = rng.choice("abcdefghijklmnopqrstuvwxyz ")
    return "".join(chars)


def with_near_repeats(texts: list[str], kind: str, seed: int) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    out: list[str] = []
    near = []
    for text in texts:
        if len(out) > 4 and rng.random() < 0.2:
            source = out[-rng.randint(1, min(32, len(out)))]
            if kind == "words":
                words = len(source.split())
                variant = user_edit(source, rng, max(1, int(words * rng.uniform(0.05, 0.5))))
            else:
                variant = typos(source, rng, rng.uniform(0.02, 0.2))
            out.append(variant)
            near.append(True)
        else:
            out.append(text)
            near.append(False)
    return out, np.array(near)


def word_distances_vs_rapidfuzz(texts: list[str], repeats: int) -> tuple[float, float, int, bool]:
    """Pairs/s of the word-level kernel and of rapidfuzz on the novelty pairs (alternating), and whether all agree."""
    i = np.array([p for p in range(len(texts)) for _ in range(max(0, p - 32), p)], np.int64)
    j = np.array([q for p in range(len(texts)) for q in range(max(0, p - 32), p)], np.int64)
    tokens = [t.split() for t in texts]
    a, b = [tokens[x] for x in i], [tokens[y] for y in j]
    ours: list[float] = []
    theirs: list[float] = []
    pair = [
        (ours, lambda: word_distance_index_pairs(texts, i, j)),
        (theirs, lambda: process.cpdist(a, b, scorer=Levenshtein.distance, workers=-1)),
    ]
    for r in range(repeats):
        for out, fn in pair if r % 2 == 0 else pair[::-1]:
            started = time.perf_counter()
            fn()
            out.append(time.perf_counter() - started)
    same = np.array_equal(word_distance_index_pairs(texts, i, j), process.cpdist(a, b, scorer=Levenshtein.distance))
    return len(i) / statistics.median(ours), len(i) / statistics.median(theirs), len(i), same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=int, default=600, help="outputs per data set")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warm_up()
    sets = data_sets(args.outputs)
    if not sets:
        print(f"no data: {SHARED} not found")
        return 1
    ok = True
    for name, texts in sets:
        mean_chars = statistics.mean(map(len, texts))
        print(f"\n## {name}: {len(texts)} real outputs, mean {mean_chars:,.0f} characters, each against the 32 before")
        times: dict[str, list[float]] = {"word": [], "char": []}
        for r in range(args.repeats):
            for level in ("word", "char") if r % 2 == 0 else ("char", "word"):
                started = time.perf_counter()
                novelty_many(texts, RecentOutputs(32), level=level)  # type: ignore[arg-type]
                times[level].append(time.perf_counter() - started)
        per = {level: statistics.median(t) / len(texts) * 1e6 for level, t in times.items()}
        print(f"cost per output, one thread: word {per['word']:,.0f} µs, char {per['char']:,.0f} µs "
              f"(char / word = {per['char'] / per['word']:.1f})")  # fmt: skip

        rate_ours, rate_theirs, pairs, same = word_distances_vs_rapidfuzz(texts, args.repeats)
        ok &= same
        print(
            f"word distances, {pairs:,} pairs: {rate_ours:,.0f} pairs/s, rapidfuzz cpdist on token lists "
            f"{rate_theirs:,.0f} pairs/s: {rate_ours / rate_theirs:.2f}x; all equal: {'yes' if same else 'NO'}"
        )

        word = np.array(novelty_many(texts, RecentOutputs(32), level="word")[0][1:], float)
        char = np.array(novelty_many(texts, RecentOutputs(32), level="char")[0][1:], float)
        pearson = float(np.corrcoef(word, char)[0, 1])
        spearman = float(np.corrcoef(ranks(word), ranks(char))[0, 1])
        print(f"values on the stream: mean word {word.mean():.3f}, char {char.mean():.3f}; "
              f"Pearson {pearson:.3f}, Spearman {spearman:.3f}")  # fmt: skip
        for kind in ("words", "typos"):
            stream, near = with_near_repeats(texts, kind, 3)
            w = np.array(novelty_many(stream, RecentOutputs(32), level="word")[0][1:], float)
            c = np.array(novelty_many(stream, RecentOutputs(32), level="char")[0][1:], float)
            n = near[1:]
            print(f"near-repeats ({kind}, {n.sum()} of {len(n)}): AUC word {auc(w[n], w[~n]):.4f}, "
                  f"char {auc(c[n], c[~n]):.4f}; mean novelty of near-repeats word {w[n].mean():.3f}, "
                  f"char {c[n].mean():.3f}; lowest fresh word {w[~n].min():.3f}, char {c[~n].min():.3f}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
