"""Benchmark: what one worker sustains, end to end, on short and on long real outputs.

Generations and their follow-ups (thumbs up/down for 70% of them, a user edit of the output for 35%, a
regenerate for 25%: 1.3 follow-ups per generation, about the mix of real traffic) are published to a real Kafka
broker first; then one ``evalstream worker`` with default settings (but ``EVALSTREAM_EMBED_BACKEND``) drains the
topic into Parquet. The rate is measured from the worker's own output: from the moment every partition has had
its first batch written (start-up, the first rebalance and the kernels' loading do not count) to the last
file, events and generations per second. Each case runs ``--repeats`` times, cases alternating; medians.

Data sets (the ``data:`` lines say which were used):

- ``short``: the last assistant turns of hh-rlhf (``../shared/data/hh-rlhf-harmless-base-test.jsonl.gz``;
  121 characters on average), or generated sample sentences when the file is not there;
- ``long``: Arena-Hard answers (``../shared/data/arena-hard-v0.1-answers.jsonl.gz``; GPT-4 and GPT-3.5,
  ~1,700 characters on average, up to 10,000) with their questions as inputs; generated long texts otherwise.

The target printed beside each figure comes from the issue that set it: 1,000 generations per second with
embeddings off on long outputs (on 2 cores).

    python bench/pipeline.py [--generations 8000] [--repeats 3] [--sets short,long] [--embed off,auto] [--flush N]
                             [--windows on,off]

``--windows on,off`` runs each case with the live windows (the default) and without (``EVALSTREAM_WINDOWS=false``),
side by side: what they cost the worker.

With embeddings on, a worker batch of 5,000 events takes tens of seconds: use fewer ``--generations`` and a
smaller ``--flush`` so that several batches follow the first.

The worker against a bare Kafka consumer and a bare Faust agent on a mix with trace spans, and the latency from
publish to queryable in DuckDB: ``bench/floor.py``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGET_LONG_OFF = 1000.0  # generations/s, embeddings off, long outputs, one worker on 2 cores


def short_pairs(n: int) -> tuple[list[tuple[str, str]], str]:
    """(input, output) pairs: the first Human turn and the last Assistant turn of hh-rlhf conversations."""
    path = SHARED / "hh-rlhf-harmless-base-test.jsonl.gz"
    if path.exists():
        pairs = []
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                for side in ("chosen", "rejected"):
                    turns = re.split(r"\n\n(Human|Assistant): ", json.loads(line)[side])
                    human = [turns[i + 1] for i in range(1, len(turns) - 1, 2) if turns[i] == "Human"]
                    bot = [turns[i + 1] for i in range(1, len(turns) - 1, 2) if turns[i] == "Assistant"]
                    if human and bot and bot[-1].strip():
                        pairs.append((human[0].strip(), bot[-1].strip()))
        return _cycle(pairs, n), f"short: hh-rlhf last assistant turns ({path})"
    return _generated(n, 1, 3), "short: generated from the sample sentences (hh-rlhf file not found)"


def long_pairs(n: int) -> tuple[list[tuple[str, str]], str]:
    """(question, answer) pairs of Arena-Hard."""
    path = SHARED / "arena-hard-v0.1-answers.jsonl.gz"
    if path.exists():
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        return _cycle([(r["prompt"], r["answer"]) for r in rows], n), f"long: Arena-Hard answers ({path})"
    return _generated(n, 15, 30), "long: generated from the sample sentences (Arena-Hard file not found)"


def _cycle(pairs: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """``n`` pairs; past the end of the file its pairs again, each output with a marker so that no output repeats
    (an embedding cache hit or a zero novelty would flatter the figures). The marker is letters: a digit would
    send every marked text through the digit-led PII detectors."""
    random.Random(0).shuffle(pairs)
    out = pairs[:n]
    for i in range(len(pairs), n):
        question, answer = pairs[i % len(pairs)]
        out.append((question, f"{answer} ({_letters(i // len(pairs))})"))
    return out


def _letters(k: int) -> str:
    """``k`` >= 1 in letters (base 26, "a" = 0): 1 -> "b", 26 -> "ba"."""
    out = ""
    while k:
        k, digit = divmod(k, 26)
        out = chr(ord("a") + digit) + out
    return out


def _generated(n: int, lo: int, hi: int) -> list[tuple[str, str]]:
    from streams.local.sample import QUESTIONS, SENTENCES

    rng = random.Random(0)
    return [(rng.choice(QUESTIONS), " ".join(rng.choices(SENTENCES, k=rng.randint(lo, hi)))) for _ in range(n)]


def traffic(pairs: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], int]:
    """Generations with their follow-ups (each right after its generation, as in a live session)."""
    from streams.local.sample import user_edit

    rng = random.Random(1)
    apps = [("support-bot", "answer"), ("support-bot", "triage"), ("docs-assistant", "answer")]
    events: list[dict[str, Any]] = []
    for i, (question, answer) in enumerate(pairs):
        app, route = apps[i % 3]
        base = {"ts": "2026-11-25T10:00:00Z", "session_id": f"s{i}", "app": app}
        events.append({
            **base, "type": "generation", "event_id": f"e{i}", "generation_id": f"g{i}", "route": route,
            "model": ("model-a", "model-b")[i % 2], "prompt_version": "v1", "input": question, "output": answer,
            "latency_ms": 800 + i % 400, "tokens_out": len(answer) // 4,
        })  # fmt: skip
        follow = {**base, "generation_id": f"g{i}"}
        if rng.random() < 0.70:
            events.append({**follow, "type": "feedback", "event_id": f"f{i}", "thumbs": rng.choice(("up", "down"))})
        if rng.random() < 0.35:
            kept = user_edit(answer, rng, rng.randint(1, 4))
            events.append({**follow, "type": "edit", "event_id": f"d{i}", "edited_output": kept})
        if rng.random() < 0.25:
            events.append({**follow, "type": "regenerate", "event_id": f"r{i}"})
    return events, len(pairs)


def run_once(
    bootstrap: str,
    events: list[dict[str, Any]],
    embed: str,
    work: Path,
    flush: int | None = None,
    windows: bool = True,
) -> dict[str, float]:
    """Publish, then drain with one worker; the steady rate from the Parquet files it wrote."""
    from sinks.parquet import parse_file_name
    from streams.local.launch import spawn_cli, stop, wait_for
    from streams.sdk.publisher import Publisher
    from streams.settings import Settings
    from streams.topics import ensure_topics

    tag = f"{int(time.time() * 1000)}"
    settings = Settings(
        bootstrap_servers=bootstrap, events_topic=f"bench.pipeline.{tag}", worker_id=f"bench-pipeline-{tag}",
        data_dir=work / tag / "data", embed_backend=embed, windows=windows,  # type: ignore[arg-type]
        metrics_topic=f"bench.metrics.{tag}", alerts_topic=f"bench.alerts.{tag}",
        **({"flush_max_events": flush} if flush else {}),
    )  # fmt: skip
    ensure_topics(settings)
    with Publisher(bootstrap, settings.events_topic) as pub:
        pub.publish_many(events)
    log_path = work / tag / "worker.log"
    worker = spawn_cli(["worker"], settings.to_env(), log_path)
    files: dict[Path, tuple[float, int]] = {}

    def landed() -> int:
        for path in (settings.data_dir / "events").glob("dt=*/*.parquet"):
            if path not in files:
                files[path] = (path.stat().st_mtime, pq.ParquetFile(path).metadata.num_rows)
        return sum(n for _, n in files.values())

    try:
        wait_for(lambda: landed() >= len(events) or None, 1800, 0.5, "the worker", alive=worker)
    except Exception:
        print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        stop(worker)
    log = log_path.read_text(errors="replace")
    counters = log.split("counters at shutdown: ")[-1].splitlines()[0] if "counters at shutdown: " in log else ""
    first: dict[int, float] = {}
    for path, (mtime, _) in files.items():
        span = parse_file_name(path.name)
        assert span is not None, path
        first[span.partition] = min(mtime, first.get(span.partition, mtime))
    start = max(first.values())
    after = [(m, n) for m, n in files.values() if m > start]
    if len(after) < 2:
        raise SystemExit("too few batches after start-up: raise --generations")
    seconds = max(m for m, _ in after) - start
    rate = sum(n for _, n in after) / seconds
    return {"events_per_s": rate, "seconds": seconds, "counters": counters}  # type: ignore[dict-item]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=8000, help="generations per run (plus follow-ups)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (median reported)")
    parser.add_argument("--sets", default="short,long", help="data sets, comma-separated: short, long")
    parser.add_argument("--embed", default="off", help="EVALSTREAM_EMBED_BACKEND values, comma-separated")
    parser.add_argument(
        "--flush", type=int, default=None, help="EVALSTREAM_FLUSH_MAX_EVENTS (default: the worker's, 5,000)"
    )
    parser.add_argument("--windows", default="on", help="EVALSTREAM_WINDOWS values, comma-separated: on, off")
    args = parser.parse_args()

    from streams.local.broker import LocalBroker

    work = Path(tempfile.mkdtemp(prefix="evalstream-bench-pipeline-"))
    cases = []
    for name in args.sets.split(","):
        pairs, label = (short_pairs if name == "short" else long_pairs)(args.generations)
        events, gens = traffic(pairs)
        chars = statistics.mean(len(o) for _, o in pairs)
        print(f"data: {label}; {gens} generations, {len(events)} events, outputs {chars:,.0f} characters on average")
        cases += [
            (name, embed, windows, events, gens)
            for embed in args.embed.split(",")
            for windows in args.windows.split(",")
        ]
    broker = None
    bootstrap = os.environ.get("EVALSTREAM_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalBroker.start(work / "kafka")
        bootstrap = broker.bootstrap_servers
    rates: dict[tuple[str, str, str], list[float]] = {(n, e, w): [] for n, e, w, _, _ in cases}
    try:
        for r in range(args.repeats):
            for name, embed, windows, events, gens in cases if r % 2 == 0 else cases[::-1]:
                result = run_once(bootstrap, events, embed, work, args.flush, windows == "on")
                gen_rate = result["events_per_s"] * gens / len(events)
                rates[(name, embed, windows)].append(gen_rate)
                print(
                    f"round {r + 1} {name:5s} embed={embed:9s} windows={windows:3s} {gen_rate:8,.0f} generations/s "
                    f"({result['events_per_s']:,.0f} events/s over {result['seconds']:.1f} s); {result['counters']}"
                )
    finally:
        if broker is not None:
            broker.stop()
    print(
        f"\n| data | embeddings | windows | generations/s (median of {args.repeats}) | runs | target | median / target"
        " |"
    )
    print("|---|---|---|---|---|---|---|")
    for (name, embed, windows), values in rates.items():
        median = statistics.median(values)
        target = TARGET_LONG_OFF if (name, embed) == ("long", "off") else None
        runs = ", ".join(f"{v:,.0f}" for v in values)
        ratio = f"{median / target:.2f}" if target else ""
        print(
            f"| {name} | {embed} | {windows} | {median:,.0f} | {runs} | {f'{target:,.0f}' if target else ''} "
            f"| {ratio} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
