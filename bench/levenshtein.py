"""Benchmark: the Numba Levenshtein kernels against rapidfuzz, side by side in one run.

Pairs come from real assistant answers (``../shared/data/hh-rlhf-harmless-base-test.jsonl.gz`` when present,
generated text otherwise) cut to ~64, 256, 1,024 and 4,096 characters, each with a realistic user edit: a few
word insertions, deletions and rewrites spread through the text. Plus novelty batches: one output against its
32 most recent neighbours, and the worker's novelty workload on long real answers (``--long``, the Arena-Hard
answers beside the clone when present: each whole answer against the 32 before it, in parallel and on one
thread).

For every case it prints pairs/second (median of ``--repeats`` runs) for the Numba batch kernel,
``rapidfuzz.process.cpdist(..., workers=-1)`` (``cdist`` for one-vs-many) and a plain rapidfuzz loop, the ratio
Numba / cpdist, and checks that all distances agree. Each implementation is timed in two halves, in opposite
orders, so drift of the machine falls on all of them alike.

    python bench/levenshtein.py [--pairs 4000] [--repeats 7] [--data PATH] [--long PATH] [--long-outputs 300]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metrics.levenshtein import distance_index_pairs, distance_one_to_many, distance_pairs, warm_up

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
SHARED_LONG = SHARED.with_name("arena-hard-v0.1-answers.jsonl.gz")
WORDS = ("please", "actually", "the", "customer", "account", "note", "quickly", "we", "café", "🙂", "team")


def corpus(data: Path = SHARED) -> tuple[str, str]:
    """One long text of real assistant answers from ``data`` (generated text when absent), and where it came from."""
    if data.exists():
        answers = []
        with gzip.open(data, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                for key in ("chosen", "rejected"):
                    answer = row[key].rsplit("\n\nAssistant:", 1)[-1].strip()
                    if answer:
                        answers.append(answer)
        return " ".join(answers), f"real text ({data}, {len(answers)} answers)"
    rng = random.Random(0)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    return " ".join(rng.choice(vocab) for _ in range(400_000)), f"generated text ({data} not found)"


def user_edit(text: str, rng: random.Random) -> str:
    """A few word-level insertions, deletions and rewrites, spread through the text."""
    words = text.split(" ")
    for _ in range(max(1, len(words) // 25) + rng.randint(0, 2)):
        i = rng.randrange(len(words))
        op = rng.randrange(3)
        if op == 0:
            words.insert(i, rng.choice(WORDS))
        elif op == 1 and len(words) > 1:
            del words[i]
        else:
            words[i] = rng.choice(WORDS)
    return " ".join(words)


def make_pairs(text: str, length: int, n: int, rng: random.Random) -> tuple[list[str], list[str]]:
    a, b = [], []
    for _ in range(n):
        start = rng.randrange(0, len(text) - length - 1)
        original = text[start : start + length]
        a.append(original)
        b.append(user_edit(original, rng))
    return a, b


def long_answers(data: Path, limit: int) -> list[str]:
    """The first ``limit`` answers of an Arena-Hard answers file (JSON lines with an ``answer`` field)."""
    with gzip.open(data, "rt", encoding="utf-8") as fh:
        answers = [json.loads(line)["answer"] for line in fh]
    return [a for a in answers if a][:limit]


def novelty_pairs(texts: list[str], k: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The worker's novelty workload: each text against the ``k`` before it (indices into ``texts``)."""
    i = [p for p in range(len(texts)) for _ in range(max(0, p - k), p)]
    j = [q for p in range(len(texts)) for q in range(max(0, p - k), p)]
    return np.array(i, np.int64), np.array(j, np.int64)


def compare(fns: list[Callable[[], object]], n_pairs: int, repeats: int) -> list[tuple[float, object]]:
    """Pairs/second of each function: median of ``repeats`` runs, in two halves in opposite orders.

    Each function runs its repeats back to back (its thread pool warm) after a short pause, so one library's
    idle threads do not steal the CPU from the other's; the two orders even out drift of the machine.
    """
    times: list[list[float]] = [[] for _ in fns]
    results: list[object] = [None] * len(fns)
    order = list(range(len(fns)))
    for half in (order, order[::-1]):
        for i in half:
            time.sleep(0.2)
            results[i] = fns[i]()  # warm
            for _ in range((repeats + 1) // 2):
                t0 = time.perf_counter()
                results[i] = fns[i]()
                times[i].append(time.perf_counter() - t0)
    return [(n_pairs / statistics.median(t), r) for t, r in zip(times, results, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4000, help="pairs per length (fewer for 4,096 chars)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--data",
        type=Path,
        default=SHARED,
        help="hh-rlhf JSONL (gzipped) to take the answers from; default ../shared/data beside the clone, "
        "generated text when absent (compare runs only on the same data: the header says which)",
    )
    parser.add_argument(
        "--long",
        type=Path,
        default=SHARED_LONG,
        help="Arena-Hard answers JSONL (gzipped) for the novelty workload on long real outputs; default "
        "../shared/data beside the clone, skipped when absent",
    )
    parser.add_argument("--long-outputs", type=int, default=300, help="answers in the novelty workload")
    args = parser.parse_args()
    if args.data != SHARED and not args.data.exists():
        parser.error(f"--data: {args.data} not found")
    if args.long != SHARED_LONG and not args.long.exists():
        parser.error(f"--long: {args.long} not found")

    t0 = time.perf_counter()
    warm_up()
    print(f"warm-up (compile or load the cached kernels): {time.perf_counter() - t0:.2f}s")
    text, source = corpus(args.data)
    print(f"data: {source}")
    import numba

    print(f"threads: numba {numba.get_num_threads()}, rapidfuzz workers=-1\n")
    rng = random.Random(42)
    header = f"{'case':<22}{'numba pairs/s':>15}{'cpdist pairs/s':>16}{'loop pairs/s':>14}{'numba/cpdist':>14}  agree"
    print(header)
    print("-" * len(header))
    all_agree = True
    for length in (64, 256, 1024, 4096):
        n = args.pairs if length <= 1024 else max(200, args.pairs // 8)
        a, b = make_pairs(text, length, n, rng)
        (nb_rate, nb_res), (cp_rate, cp_res), (lp_rate, lp_res) = compare(
            [
                lambda a=a, b=b: distance_pairs(a, b),
                lambda a=a, b=b: process.cpdist(a, b, scorer=Levenshtein.distance, workers=-1),
                lambda a=a, b=b: [Levenshtein.distance(x, y) for x, y in zip(a, b, strict=True)],
            ],
            n,
            args.repeats,
        )
        agree = np.array_equal(nb_res, cp_res) and np.array_equal(nb_res, np.array(lp_res))
        all_agree &= agree
        print(f"{f'pairs ~{length} chars':<22}{nb_rate:>15,.0f}{cp_rate:>16,.0f}{lp_rate:>14,.0f}"
              f"{nb_rate / cp_rate:>13.2f}x  {'yes' if agree else 'NO'}")  # fmt: skip
    for length in (256, 1024):
        groups = [make_pairs(text, length, 33, rng)[0] for _ in range(max(20, args.pairs // 100))]
        n = 32 * len(groups)

        def numba_novelty(groups: list[list[str]] = groups) -> list[np.ndarray]:
            return [distance_one_to_many(g[0], g[1:]) for g in groups]

        def cdist_novelty(groups: list[list[str]] = groups) -> list[np.ndarray]:
            return [process.cdist([g[0]], g[1:], scorer=Levenshtein.distance, workers=-1)[0] for g in groups]

        def loop_novelty(groups: list[list[str]] = groups) -> list[list[int]]:
            return [[Levenshtein.distance(g[0], c) for c in g[1:]] for g in groups]

        (nb_rate, nb_res), (cd_rate, cd_res), (lp_rate, lp_res) = compare(
            [numba_novelty, cdist_novelty, loop_novelty], n, args.repeats
        )
        agree = all(
            np.array_equal(x, y) and np.array_equal(x, np.array(z))
            for x, y, z in zip(nb_res, cd_res, lp_res, strict=True)  # type: ignore[call-overload]
        )
        all_agree &= agree
        print(f"{f'1-vs-32 ~{length} chars':<22}{nb_rate:>15,.0f}{cd_rate:>16,.0f}{lp_rate:>14,.0f}"
              f"{nb_rate / cd_rate:>13.2f}x  {'yes' if agree else 'NO'}")  # fmt: skip
    if args.long.exists():
        texts = long_answers(args.long, args.long_outputs)
        i, j = novelty_pairs(texts)
        a, b = [texts[x] for x in i], [texts[y] for y in j]
        mean = sum(map(len, texts)) / len(texts)
        for threads, parallel, workers in (("2 thr", True, -1), ("1 thr", False, 1)):
            (nb_rate, nb_res), (cp_rate, cp_res) = compare(
                [
                    lambda p=parallel: distance_index_pairs(texts, i, j, p),
                    lambda w=workers: process.cpdist(a, b, scorer=Levenshtein.distance, workers=w),
                ],
                len(i),
                args.repeats,
            )
            agree = np.array_equal(nb_res, cp_res)
            all_agree &= agree
            label = f"novelty {threads} ~{mean:,.0f}"
            print(f"{label:<22}{nb_rate:>15,.0f}{cp_rate:>16,.0f}{'':>14}{nb_rate / cp_rate:>13.2f}x  "
                  f"{'yes' if agree else 'NO'}")  # fmt: skip
        print(
            f"\n(novelty rows: {len(texts)} real long answers from {args.long}, each against the 32 before it, "
            f"{len(i):,} pairs, mean {mean:,.0f} characters; against cpdist with workers=-1 / workers=1)"
        )
    else:
        print(f"\n(no novelty workload on long answers: {args.long} not found)")
    print("(1-vs-32 rows compare with rapidfuzz process.cdist([x], candidates, workers=-1))")
    print("all distances agree" if all_agree else "MISMATCH between implementations")
    return 0 if all_agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
