"""Benchmark: the PII scan's cost per kilobyte, on short and on long real texts.

For each data set it times the scan as the worker runs it (each detector's pattern only when its cheap gate
finds what every match needs) next to the reference, the scan before the gates (every pattern over the whole
text, ``_spans(text, gated=False)``, skipped only for a text with no "@", ":" or digit at all), alternating,
median of ``--repeats``, and checks that all three find exactly the same spans on every text.

- ``short``: hh-rlhf conversation turns (``../shared/data/hh-rlhf-harmless-base-test.jsonl.gz``);
- ``long``: Arena-Hard answers and their questions (``../shared/data/arena-hard-v0.1-answers.jsonl.gz``);
- ``pii-dense``: the sample traffic's sentences, each with an e-mail address, a phone number, a card and an IP.

    python bench/pii.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import median_seconds
from metrics.pii import _spans

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
_MAYBE_PII = re.compile(r"[@:\d]")


def before(text: str) -> list[tuple[int, int, str, str]]:
    """The scan before the gates: one prescan, then all six patterns."""
    return [] if _MAYBE_PII.search(text) is None else _spans(text, gated=False)


def data_sets() -> list[tuple[str, list[str]]]:
    out = []
    short = SHARED / "hh-rlhf-harmless-base-test.jsonl.gz"
    if short.exists():
        with gzip.open(short, "rt", encoding="utf-8") as fh:
            turns = [t for line in fh for t in re.split(r"\n\n(?:Human|Assistant): ", json.loads(line)["chosen"])]
        out.append(("short", [t for t in turns if t.strip()]))
    long = SHARED / "arena-hard-v0.1-answers.jsonl.gz"
    if long.exists():
        with gzip.open(long, "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        out.append(("long", [r["answer"] for r in rows] + [r["prompt"] for r in rows]))
    from streams.local.sample import SENTENCES

    pii = "Write to jane.roe@example.com or call +1 (415) 555-0100; card 4111 1111 1111 1111 from 10.0.0.1."
    out.append(("pii-dense", [f"{s} {pii} {s}" for s in SENTENCES] * 20))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print("| data | texts | mean characters | gated µs/KB | before µs/KB | before / gated | same spans |")
    print("|---|---|---|---|---|---|---|")
    for name, texts in data_sets():
        kb = sum(map(len, texts)) / 1000
        same = all(_spans(t) == _spans(t, gated=False) == before(t) for t in texts)
        gated: list[float] = []
        full: list[float] = []
        for r in range(args.repeats):  # alternating, so drift of the machine falls on both alike
            pair = [(gated, _spans), (full, before)]
            for out, scan in pair if r % 2 == 0 else pair[::-1]:
                out.append(median_seconds(lambda scan=scan, texts=texts: [scan(t) for t in texts], 1))  # type: ignore[misc]
        g, f = statistics.median(gated) / kb * 1e6, statistics.median(full) / kb * 1e6
        mean = kb * 1000 / len(texts)
        ok = "yes" if same else "NO"
        print(f"| {name} | {len(texts):,} | {mean:,.0f} | {g:.1f} | {f:.1f} | {f / g:.2f} | {ok} |")
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
