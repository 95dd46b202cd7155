"""Benchmark: the worker against its floors (Kafka alone, Faust alone), and publish -> queryable latency.

One realistic mix is published once to a topic of the broker: generations (hh-rlhf turns, ``--set short``, or
Arena-Hard answers, ``--set long``; generated texts when the files are absent) each with 2-4 trace spans, a
thumbs (70%) and a scored feedback (40%), an edit of the output (35%) and a regenerate (25%); a third of them
answered from retrieved passages; 1% malformed messages of every kind the worker dead-letters. Then each case
drains that same topic with a consumer group of its own, cases alternating, ``--repeats`` rounds, medians:

- (a) a bare aiokafka consumer that only decodes the JSON of each value: the transport's floor;
- (b) a Faust agent with the worker app's broker settings and batching helper
  (:func:`streams.faust_ext.batching.take_events_overlapped`) that only acks: the framework's floor;
- (c) the full worker (``evalstream worker``), embeddings off;
- (d) the full worker with the embedding stage (``EVALSTREAM_EMBED_BACKEND=auto``) on a prefix of the same mix
  (``--embed-events``, batches of ``--embed-flush``: a worker batch with the model takes many seconds).

Rates are messages (malformed ones included) per second from the first message processed to the last: for (a)
and (b) from the end of their first batch (a ``getmany`` of at most 500 records for (a), a batch of the worker's
5,000 acked for (b)) to the end of the last; for (c) and (d) the way ``bench/pipeline.py`` measures the worker,
from the Parquet files it wrote, from the moment every partition has had its first batch written to the last
file. So start-up, the group join and the first fetch count in none of them. (a) has the whole topic fetched
within a fraction of a second: its figure is mostly ``json.loads``, and noisy. Generations/s = messages/s x the
mix's generations per message. Targets (issue 20): (c) / (b) ≥ 0.5, the worker keeps at least half of the Faust
floor; (c) / (a) is reported without one.

Then the latency: a worker (embeddings off) runs while a paced publisher (:class:`streams.sdk.publisher.Publisher`)
sends the mix for ``--latency-s`` seconds at ``--latency-share`` of (c)'s median rate, each event's ``ts`` set to
its publish time; a reader polls every ``--poll-ms``: when the events folder has a new file, it asks the
``events`` view of :func:`sinks.catalog.connect` for the new rows and takes the time each event id was first
returned. Publish -> queryable, p50 / p99 / max (target: p99 ≤ 5 s).

``--profile PATH`` adds one run of (c) under cProfile (the worker's main thread: its event loop; the Parquet
writes and novelty run on other threads, which cProfile does not see) and prints its top functions.

    python bench/floor.py [--events 20000] [--embed-events 3000] [--embed-flush 500] [--repeats 3]
                          [--cases a,b,c,d] [--set short] [--latency-s 45] [--latency-share 0.8]
                          [--latency-rate N] [--poll-ms 150] [--profile PATH]

Uses ``EVALSTREAM_BOOTSTRAP_SERVERS`` when set, else starts a local broker (:mod:`streams.local.broker`). The
topics it made (the mix's, the workers' changelogs) are deleted at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _sibling(name: str) -> Any:
    """``bench/<name>.py`` as a module (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pipeline = _sibling("pipeline")  # the texts: short_pairs, long_pairs
floor_worker = _sibling("floor_worker")  # the worker's runs: cases (c) and (d), the latency run

TARGET_C_OVER_B = 0.5  # the worker keeps at least half of what Faust alone sustains (issue 20)
TARGET_C_OVER_A: float | None = None  # none set: reported for information
TARGET_P99_S = 5.0  # publish -> queryable in DuckDB, at 80% of the worker's max rate

Message = dict[str, Any] | tuple[bytes | None, bytes | None]  # as in floor_worker
Batches = list[tuple[float, int, list[int]]]  # (when done, messages, partitions), as in floor_worker


def mix(pairs: list[tuple[str, str]], seed: int = 2, malformed: float = 0.01) -> tuple[list[Message], int]:
    """The realistic mix for ``pairs`` (see the module docstring); returns (messages, generations)."""
    from streams.local.sample import _malformed, user_edit

    rng = random.Random(seed)
    start = datetime(2026, 11, 25, 10, tzinfo=UTC)
    apps = [("support-bot", "answer"), ("support-bot", "triage"), ("docs-assistant", "answer")]
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    out: list[Message] = []
    for i, (question, answer) in enumerate(pairs):
        app, route = apps[i % 3]
        t = start + timedelta(seconds=i / 500)  # event time moves as fast as in a live stream of this rate
        base = {"session_id": f"s{i // 4}", "app": app}
        trace = f"t{i:08x}"
        latency = 600.0 + rng.random() * 1200
        components = ["retriever" if app == "docs-assistant" else "router", "llm", "tool", "guardrail"]
        steps = components[: rng.randint(2, 4)]
        span_start, spans = t - timedelta(milliseconds=latency), []
        for k, component in enumerate(steps):
            span_end = span_start + timedelta(milliseconds=latency / len(steps))
            spans.append({
                **base, "type": "span", "event_id": f"p{i}-{k}", "ts": iso(span_end), "trace_id": trace,
                "span_id": f"{trace}-{k}", "parent_span_id": f"{trace}-0" if k else None, "component": component,
                "name": f"{component}.call", "start": iso(span_start), "end": iso(span_end),
                "status": "error" if rng.random() < 0.01 else "ok",
            })  # fmt: skip
            span_start = span_end
        late = rng.random() < 0.3  # a tracer sends a span when it ends: mostly before the generation event
        out += [] if late else spans
        context = [pairs[rng.randrange(len(pairs))][1][:400] for _ in range(3)] if app == "docs-assistant" else None
        out.append({
            **base, "type": "generation", "event_id": f"e{i}", "ts": iso(t), "generation_id": f"g{i}",
            "route": route, "model": ("model-a", "model-b")[i % 2], "prompt_version": "v1", "input": question,
            "output": answer, "latency_ms": round(latency, 1), "tokens_in": len(question) // 4,
            "tokens_out": len(answer) // 4, "trace_id": trace, "tags": {"region": ("eu", "us")[i % 2]},
            **({"context": context, "index_version": "kb-1"} if context else {}),
        })  # fmt: skip
        out += spans if late else []
        follow = {**base, "generation_id": f"g{i}", "ts": iso(t + timedelta(seconds=5))}
        if rng.random() < 0.70:
            out.append({**follow, "type": "feedback", "event_id": f"f{i}", "thumbs": rng.choice(("up", "down"))})
        if rng.random() < 0.40:
            out.append({**follow, "type": "feedback", "event_id": f"s{i}", "score": round(rng.random(), 2),
                        **({"comment": "not what I asked"} if rng.random() < 0.2 else {})})  # fmt: skip
        if rng.random() < 0.35:
            out.append({**follow, "type": "edit", "event_id": f"d{i}",
                        "edited_output": user_edit(answer, rng, rng.randint(1, 4))})  # fmt: skip
        if rng.random() < 0.25:
            out.append({**follow, "type": "regenerate", "event_id": f"r{i}"})
    valid = [m for m in out if isinstance(m, dict)]
    for k in range(round(len(out) * malformed)):
        out.insert(rng.randrange(len(out) + 1), _malformed(rng, k, rng.choice(valid)))
    return out, len(pairs)


def build(kind: str, n_messages: int) -> tuple[list[Message], int, str]:
    """A mix of about ``n_messages`` messages (cut at a generation's end) of the ``short`` or ``long`` texts."""
    per_generation = 6.0
    pairs, label = (pipeline.short_pairs if kind == "short" else pipeline.long_pairs)(
        int(n_messages / per_generation) + 50
    )
    messages, _ = mix(pairs)
    gens = [i for i, m in enumerate(messages) if isinstance(m, dict) and m["type"] == "generation"]
    cut = next((i for i in gens if i >= n_messages), len(messages))
    messages = messages[:cut]
    return messages, sum(isinstance(m, dict) and m["type"] == "generation" for m in messages), label


def publish(bootstrap: str, topic: str, messages: list[Message]) -> None:
    from streams.sdk.publisher import Publisher

    with Publisher(bootstrap, topic) as pub:
        for m in messages:
            pub.publish(m) if isinstance(m, dict) else pub.publish_raw(m[1], m[0])


def steady_rate(batches: Batches, every_partition: bool = True) -> tuple[float, float]:
    """(messages/s, seconds) from the moment every partition has had its first batch (or, ``every_partition``
    false, from the first batch) to the last batch; the batches up to that moment do not count."""
    first: dict[int, float] = {}
    for t, _, parts in batches:
        for p in parts:
            first.setdefault(p, t)
    start = max(first.values()) if every_partition else min(t for t, _, _ in batches)
    after = [(t, n) for t, n, _ in batches if t > start]
    if len(after) < 2:
        raise SystemExit("too few batches after every partition's first: raise --events")
    seconds = max(t for t, _ in after) - start
    return sum(n for _, n in after) / seconds, seconds


def run_child(kind: str, bootstrap: str, topic: str, expect: int, work: Path, tag: str) -> Batches:
    """Case (a) or (b) in a child process (``bench/floor_consumers.py``); its batches once it saw ``expect``."""
    from streams.local.launch import stop, wait_for

    out = work / f"{tag}.json"
    log = work / f"{tag}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("floor_consumers.py")), kind, bootstrap, topic, tag,
             str(expect), str(out), str(work / tag)],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: out.exists() or (proc.poll() is not None and "exited") or None, 600, 0.2, f"case {kind}")
        if not out.exists():
            raise RuntimeError(f"case {kind} exited with code {proc.returncode}")
    except Exception:
        print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        stop(proc)
    return [(t, n, parts) for t, n, parts in json.loads(out.read_text())]


def delete_topics(bootstrap: str, tag: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    mine = [t for t in admin.list_topics(timeout=30).topics if tag in t]
    for future in admin.delete_topics(mine, operation_timeout=30).values() if mine else ():
        future.result()


def print_profile(path: Path, top: int = 20) -> None:
    """The worker's main thread under cProfile: its own time by package (the event loop waiting in epoll apart;
    start-up included), then the top functions by own time and the project's by cumulative time."""
    import pstats

    stats = pstats.Stats(str(path), stream=sys.stdout)
    by_package: Counter[str] = Counter()
    for (file, _, name), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "select.epoll" in name:
            package = "idle: waiting in epoll"
        elif file.startswith(str(Path(__file__).resolve().parents[1])):
            package = "/".join(Path(file).relative_to(Path(__file__).resolve().parents[1]).parts[:2])
        elif "importlib" in file or name in ("<built-in method marshal.loads>", "<built-in method builtins.compile>"):
            package = "imports (start-up)"
        else:
            parts = Path(file).parts
            package = next((parts[i + 1] for i in range(len(parts) - 1) if parts[i] == "site-packages"), "")
            package = package or ("python3.11/" + parts[-1] if file != "~" else name)
            package = "asyncio" if "/asyncio/" in file else package
        by_package[package] += own
    total = sum(by_package.values())
    print(f"\nprofile of (c), own time by package ({total:.1f} s in all, start-up and shutdown included):")
    for package, own in by_package.most_common(top):
        print(f"  {own:6.2f} s {own / total:6.1%}  {package}")
    print(f"\nprofile of (c), top {top} by own time:")
    stats.sort_stats("tottime").print_stats(top)
    print(f"profile of (c), the project's top {top} by cumulative time:")
    stats.sort_stats("cumulative").print_stats(r"/(streams|metrics|sinks)/", top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="messages of (a)-(c), about")
    parser.add_argument("--embed-events", type=int, default=3_000, help="messages of (d), about")
    parser.add_argument("--embed-flush", type=int, default=500, help="EVALSTREAM_FLUSH_MAX_EVENTS of (d)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median reported)")
    parser.add_argument("--cases", default="a,b,c,d", help='cases, comma-separated ("": none)')
    parser.add_argument("--set", default="short", choices=("short", "long"), help="texts of the outputs")
    parser.add_argument("--latency-s", type=float, default=45.0, help="latency run's length (0: none)")
    parser.add_argument("--latency-share", type=float, default=0.8, help="share of (c)'s rate to publish at")
    parser.add_argument("--latency-rate", type=float, default=None, help="messages/s to publish at (else share x c)")
    parser.add_argument("--poll-ms", type=float, default=150.0, help="how often the latency reader polls")
    parser.add_argument("--profile", type=Path, default=None, help="also run (c) under cProfile, stats to PATH")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if args.latency_s > 0 and "c" not in cases and not args.latency_rate:
        parser.error("the latency run needs case c (its rate) or --latency-rate")

    from streams.local.broker import LocalBroker
    from streams.settings import Settings
    from streams.topics import ensure_topics

    work = Path(tempfile.mkdtemp(prefix="evalstream-bench-floor-"))
    tag = f"bench-floor-{int(time.time() * 1000)}"
    messages, gens, label = build(args.set, args.events)
    kinds = Counter(m["type"] if isinstance(m, dict) else "malformed" for m in messages)
    print(
        f"data: {label}; (a)-(c): {len(messages):,} messages, {gens:,} generations; per generation "
        + ", ".join(f"{kinds[k] / gens:.2f} {k}" for k in ("span", "feedback", "edit", "regenerate", "malformed"))
    )
    small = messages[: args.embed_events]
    small_gens = sum(isinstance(m, dict) and m["type"] == "generation" for m in small)
    if "d" in cases:
        print(f"(d): the first {len(small):,} messages of the same mix ({small_gens:,} generations), worker batches "
              f"of {args.embed_flush}")  # fmt: skip
    broker = None
    bootstrap = os.environ.get("EVALSTREAM_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalBroker.start(work / "kafka")
        bootstrap = broker.bootstrap_servers
    rates: dict[str, list[float]] = {c: [] for c in cases}
    topics = {c: f"{tag}.{'small' if c == 'd' else 'mix'}" for c in "abcd"}
    try:
        for topic, published in ((topics["a"], messages), (topics["d"], small)):
            if any(topics[c] == topic for c in cases) or (topic == topics["c"] and args.profile):
                ensure_topics(Settings(bootstrap_servers=bootstrap, events_topic=topic, metrics_topic=f"{tag}.m",
                                       alerts_topic=f"{tag}.a"))  # fmt: skip
                publish(bootstrap, topic, published)
        for r in range(args.repeats):
            for c in cases if r % 2 == 0 else cases[::-1]:
                run = f"{tag}-{c}{r}"
                expect = len(small) if c == "d" else len(messages)
                counters = ""
                if c in ("a", "b"):
                    batches = run_child("bare" if c == "a" else "faust", bootstrap, topics[c], expect, work, run)
                else:
                    flush = args.embed_flush if c == "d" else None
                    embed = "auto" if c == "d" else "off"
                    batches, counters = floor_worker.run_worker(bootstrap, topics[c], expect, embed, work, run, flush)
                rate, seconds = steady_rate(batches, every_partition=c not in "ab")
                rates[c].append(rate)
                g = rate * (small_gens / len(small) if c == "d" else gens / len(messages))
                unit = "batches" if c in "ab" else "files"
                print(f"round {r + 1} ({c}) {rate:9,.0f} messages/s {g:7,.0f} generations/s over {seconds:.2f} s "
                      f"({len(batches)} {unit}){'; ' + counters if counters else ''}", flush=True)  # fmt: skip
        if args.profile:
            batches, counters = floor_worker.run_worker(bootstrap, topics["c"], len(messages), "off", work,
                                           f"{tag}-profile", profile=args.profile)  # fmt: skip
            print(f"(c) under cProfile: {steady_rate(batches)[0]:,.0f} messages/s; {counters}")
        lat = None
        if args.latency_s > 0:
            rate = args.latency_rate or args.latency_share * statistics.median(rates["c"])
            pairs, _ = (pipeline.short_pairs if args.set == "short" else pipeline.long_pairs)(
                int(rate * args.latency_s / 5.5) + 100
            )
            lat = floor_worker.latency(
                bootstrap, mix(pairs, seed=3)[0], rate, args.latency_s, args.poll_ms / 1000, work, f"{tag}-latency"
            )
    finally:
        if bootstrap and broker is None:
            delete_topics(bootstrap, tag)
        if broker is not None:
            broker.stop()
    print_table(args, rates, gens / len(messages), small_gens / max(1, len(small)), len(small), lat)
    if args.profile:
        print_profile(args.profile)
    return 0


def print_table(
    args: argparse.Namespace, rates: dict[str, list[float]], per: float, per_small: float, n_small: int,
    lat: dict[str, Any] | None,
) -> None:  # fmt: skip
    names = {
        "a": "(a) aiokafka consumer, json.loads only",
        "b": "(b) Faust agent, acks only",
        "c": "(c) worker, embeddings off",
        "d": f"(d) worker, embeddings auto ({n_small:,} messages, batches of {args.embed_flush})",
    }
    if rates:
        print(f"\n| case | messages/s, median of {args.repeats} (runs) | generations/s (runs) |")
        print("|---|---|---|")
    for c, values in rates.items():
        share = per_small if c == "d" else per
        runs = ", ".join(f"{v:,.0f}" for v in values)
        gruns = ", ".join(f"{v * share:,.0f}" for v in values)
        median = statistics.median(values)
        print(f"| {names[c]} | {median:,.0f} ({runs}) | {median * share:,.0f} ({gruns}) |")
    med = {c: statistics.median(v) for c, v in rates.items()}
    ratios = [(n, d, t) for n, d, t in (("c", "b", TARGET_C_OVER_B), ("c", "a", TARGET_C_OVER_A)) if {n, d} <= set(med)]
    if ratios:
        print("\n| ratio of the medians | value | target |\n|---|---|---|")
    for num, den, target in ratios:
        ratio = med[num] / med[den]
        verdict = f"≥ {target}: {'met' if ratio >= target else 'NOT met'}" if target else "none set"
        print(f"| ({num}) / ({den}) | {ratio:.2f} | {verdict} |")
    if lat is not None:
        met = "met" if lat["p99"] <= TARGET_P99_S else "NOT met"
        print(
            f"\nlatency, publish -> queryable in DuckDB: {lat['published']:,} messages at {lat['rate']:,.0f}/s over "
            f"{lat['seconds']:.1f} s ({lat['valid']:,} valid, {lat['missing']} never seen): p50 {lat['p50']:.2f} s, "
            f"p99 {lat['p99']:.2f} s (target ≤ {TARGET_P99_S:g} s: {met}), max {lat['max']:.2f} s; second half "
            f"alone p50 {lat['p50_late']:.2f} s, p99 {lat['p99_late']:.2f} s. Reader: {lat['polls']} polls, "
            f"{lat['queries']} queries of {lat['query_mean'] * 1000:.0f} ms on average, {lat['query_max'] * 1000:.0f} "
            "ms at most. "
            f"Worker: {lat['counters']}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
