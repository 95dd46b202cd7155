"""Benchmark: embedding throughput of the default torch backend, the optimized backend, and the Faust stage.

In one run, on the same sentences (real conversation turns from ``../shared/data/`` when present, generated
otherwise), at the same batch size:

1. ``SentenceTransformer.encode`` with the default fp32 torch backend (the reference);
2. on CPU the ONNX fp32 export, on CUDA ``SentenceTransformer.encode`` in fp16, and the backend ``auto`` picks
   (ONNX int8 routed by length on CPU, ``DirectTorchEncoder`` in fp16 on CUDA), timed alternately with (1),
   median of ``--repeats`` runs, with their cosine agreement to (1);
3. the full stage: generations published to a real Kafka broker, consumed by ``evalstream worker`` (Faust,
   ``take_events`` batches, embedding of output and input, scores, Parquet), timed from the worker's own
   ``embedded_at`` stamps (from the moment every partition has had its first batch, so start-up does not
   count), next to a raw ``encode`` of the same texts with the same backend (``--repeats`` rounds of raw, then
   stage, each with its own broker; the stage / raw ratio of each round, then their median). ``--workers N``
   runs N worker processes in one consumer group: beside a GPU one worker's event loop (parsing, novelty,
   scores, Parquet) is the limit, not the model.

Targets: optimized / default >= 2.0 on CPU with mean cosine >= 0.99 (min >= 0.98); stage / raw >= 0.9;
on one H100, >= 10,000 sentences/s.

    python bench/embeddings.py [--sentences 1024] [--generations 4096] [--flush 1024] [--repeats 3] [--workers 1]
                               [--placement process,worker,server] [--data PATH] [--texts short|long]
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
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from streams.embedding.backends import TorchEncoder
from streams.embedding.encoder import cosine_agreement, load_encoder
from streams.embedding.model import Encoder, cuda_available
from streams.embedding.onnx_export import default_cache_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
ARENA = SHARED.with_name("arena-hard-v0.1-answers.jsonl.gz")


def _letters(k: int) -> str:
    """``k`` >= 1 in letters: 1 -> "b", 25 -> "z", 26 -> "ba" (base 26, "a" = 0).

    >>> [_letters(k) for k in (1, 2, 26, 27)]
    ['b', 'c', 'ba', 'bb']
    """
    out = ""
    while k:
        k, digit = divmod(k, 26)
        out = chr(ord("a") + digit) + out
    return out


def sentences(n: int, data: Path = SHARED) -> tuple[list[str], str]:
    """``n`` distinct texts: conversation turns from ``data`` (hh-rlhf JSONL, gzipped), or generated ones."""
    if data.exists():
        seen: dict[str, None] = {}
        with gzip.open(data, "rt", encoding="utf-8") as fh:
            for line in fh:
                for turn in re.split(r"\n\n(?:Human|Assistant): ", json.loads(line)["chosen"]):
                    if turn.strip():
                        seen.setdefault(turn.strip(), None)
        texts = list(seen)
        random.Random(0).shuffle(texts)
        if len(texts) >= n:
            return texts[:n], f"real conversation turns ({data})"
        # More than the file holds: the turns again, each with a marker, so no text repeats (no cache hits).
        # The marker is letters: a digit would send every marked text through the full PII scan.
        real = len(texts)
        texts += [f"{texts[i % real]} ({_letters(i // real)})" for i in range(real, n)]
        return texts, f"real conversation turns ({data}; {real} distinct, repeated with a marker to {n})"
    from streams.local.sample import QUESTIONS, SENTENCES

    rng = random.Random(0)
    pool = [*QUESTIONS, *SENTENCES]
    out: dict[str, None] = {}
    while len(out) < n:
        out.setdefault(" ".join(rng.sample(pool, rng.randint(1, 4))) + f" (#{len(out)})", None)
    return list(out), f"generated from the sample traffic ({data} not found)"


def long_sentences(n: int, data: Path = ARENA) -> tuple[list[str], str]:
    """``n`` texts, question and answer in turn (the stage's input and output): Arena-Hard when ``data`` exists
    (past its 1,000 answers, again with a letter marker so that no text repeats), generated long texts otherwise."""
    if data.exists():
        with gzip.open(data, "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        random.Random(0).shuffle(rows)
        texts = [t for r in rows for t in (r["prompt"], r["answer"])]
        real = len(texts)
        texts += [f"{texts[i % real]} ({_letters(i // real)})" for i in range(real, n)]
        return texts[:n], f"long: Arena-Hard questions and answers ({data})"
    from streams.local.sample import QUESTIONS, SENTENCES

    rng = random.Random(0)
    out = []
    for i in range(n):
        out.append(
            rng.choice(QUESTIONS) if i % 2 == 0 else " ".join(rng.choices(SENTENCES, k=20)) + f" ({_letters(i)})"
        )
    return out, f"long: generated from the sample traffic ({data} not found)"


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def alternate(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each fn, run in turns (ABAB...) so machine drift falls on all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            times[i].append(timed(fns[i]))
    return [statistics.median(t) for t in times]


def stage(
    encoder_backend: str,
    texts: list[str],
    batch_size: int,
    generations: int,
    flush: int,
    workers: int = 1,
    placement: str = "process",
    context_of: Callable[[int], list[str]] | None = None,
) -> dict[str, float]:
    """Generations → Kafka → ``workers`` worker processes (one consumer group); sentences/s from embedded_at.

    ``placement``: each worker runs the model in a child process of its own (``process``, the default), in
    itself (``worker``), or all share one ``evalstream encoder`` (``server``).

    Steady state only: from the moment every partition has had its first batch (so start-up, the group's
    rebalances and each worker's first batch do not count) to the last batch.

    ``context_of(i)``: the retrieved passages of generation ``i`` (the RAG scores), none by default. The rate is
    two texts per generation either way (``bench/rag.py`` compares generations per second).
    """
    from sinks.parquet import parse_file_name
    from streams.local.broker import LocalBroker
    from streams.local.launch import spawn_cli, stop, wait_for
    from streams.sdk.publisher import Publisher
    from streams.settings import Settings
    from streams.topics import ensure_topics
    from streams.worker.evalconfig import EXAMPLE_CONFIG

    work = Path(tempfile.mkdtemp(prefix="evalstream-bench-emb-"))
    broker = None
    bootstrap = os.environ.get("EVALSTREAM_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalBroker.start(work / "kafka")
        bootstrap = broker.bootstrap_servers
    tag = str(int(time.time()))
    settings = Settings(
        bootstrap_servers=bootstrap, events_topic=f"bench.embeddings.{tag}", worker_id=f"bench-emb-{tag}",
        data_dir=work / "data", topic_partitions=max(4, workers), flush_max_events=flush, flush_interval_s=2.0,
        eval_config=EXAMPLE_CONFIG, embed_backend=encoder_backend, embed_batch_size=batch_size,  # type: ignore[arg-type]
        embed_process=placement == "process", embed_server=work / "encoder.sock" if placement == "server" else None,
    )  # fmt: skip
    try:
        ensure_topics(settings)
        apps = [("support-bot", "answer"), ("support-bot", "triage"), ("docs-assistant", "answer")]

        def generation(i: int) -> dict[str, object]:
            return {
                "type": "generation", "event_id": f"e{i}", "ts": "2026-11-25T10:00:00Z",
                "session_id": f"s{i % 97}", "app": apps[i % 3][0], "generation_id": f"g{i}",
                "route": apps[i % 3][1], "model": "m", "prompt_version": "v1",
                "input": texts[2 * i], "output": texts[2 * i + 1],
                **({"context": context_of(i)} if context_of is not None else {}),
            }  # fmt: skip

        with Publisher(bootstrap, settings.events_topic) as pub:
            pub.publish_many(generation(i) for i in range(generations))
        server = spawn_cli(["encoder"], settings.to_env(), work / "encoder.log") if placement == "server" else None
        procs = [spawn_cli(["worker"], settings.to_env(), work / f"worker-{i}.log") for i in range(workers)]
        counted: dict[Path, int] = {}

        def landed() -> int:
            # Parquet footers only (a DuckDB scan each poll would take CPU from the worker being timed)
            for path in (settings.data_dir / "embeddings").glob("dt=*/*.parquet"):
                if path not in counted:
                    counted[path] = pq.ParquetFile(path).metadata.num_rows
            return sum(counted.values())

        def all_landed() -> bool:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited with code {proc.returncode}")
            return landed() == generations

        try:
            wait_for(all_landed, 1800, 1.0, "the workers")
        except RuntimeError:
            for i in range(workers):
                log = (work / f"worker-{i}.log").read_text(errors="replace")
                print(f"the end of {work / f'worker-{i}.log'}:\n{log[-4000:]}", file=sys.stderr)
            raise
        finally:
            for proc in procs:
                stop(proc)
            if server is not None:
                stop(server)
        for i in range(workers):  # where each worker's event loop spent the run (logged at shutdown)
            log = (work / f"worker-{i}.log").read_text(errors="replace")
            if "counters at shutdown: " in log:
                print(f"worker {i}: {log.split('counters at shutdown: ')[-1].splitlines()[0]}")
        stamps: dict[datetime, int] = {}  # embedded_at -> rows: one stamp per worker batch
        first_per_partition: dict[int, datetime] = {}
        for path in counted:
            column: list[datetime] = pq.read_table(path, columns=["embedded_at"]).column(0).to_pylist()
            span = parse_file_name(path.name)
            if span is None:
                raise SystemExit(f"{path} is not named like the sinks' files")
            partition = span.partition
            first = min(column)
            if partition not in first_per_partition or first < first_per_partition[partition]:
                first_per_partition[partition] = first
            for stamp in column:
                stamps[stamp] = stamps.get(stamp, 0) + 1
        start = max(first_per_partition.values())
        rows = sorted(stamps.items())
        steady = [(t, n) for t, n in rows if t > start]
        if len(steady) < 2:
            raise SystemExit(f"only {len(steady)} batches after start-up: raise --generations or lower --flush")
        span = (steady[-1][0] - start).total_seconds()
        return {"rate": 2 * sum(n for _, n in steady) / span, "batches": len(rows), "span": span}
    finally:
        if broker is not None:
            broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=1024, help="texts for the raw encode comparison")
    parser.add_argument("--generations", type=int, default=4096, help="generations published for the stage")
    parser.add_argument("--flush", type=int, default=1024, help="worker batch (EVALSTREAM_FLUSH_MAX_EVENTS)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 256 on CUDA")
    parser.add_argument("--skip-stage", action="store_true")
    parser.add_argument(
        "--data",
        type=Path,
        default=SHARED,
        help="hh-rlhf JSONL (gzipped) to take the texts from; default ../shared/data beside the clone, texts "
        "generated from the sample traffic when absent (compare runs only on the same data: the header says which)",
    )
    parser.add_argument(
        "--texts",
        choices=("short", "long"),
        default="short",
        help="short: hh-rlhf conversation turns (--data); long: Arena-Hard questions and answers "
        "(../shared/data/arena-hard-v0.1-answers.jsonl.gz), as input and output of each generation",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes in the stage's consumer group (scale-out beside a GPU)"
    )
    parser.add_argument(
        "--placement",
        default="process",
        help="where the stage's model runs, comma-separated placements measured side by side in each round: "
        "process (a child process of each worker, the default), worker (in the worker itself, "
        "EVALSTREAM_EMBED_PROCESS=false), server (one `evalstream encoder` shared by the workers)",
    )
    args = parser.parse_args()
    placements = [p.strip() for p in args.placement.split(",")]
    if not set(placements) <= {"process", "worker", "server"}:
        parser.error(f"--placement: process, worker and/or server, comma-separated; not {args.placement!r}")

    gpu = cuda_available()
    batch = args.batch_size or (256 if gpu else 32)
    if args.data != SHARED and not args.data.exists():
        parser.error(f"--data: {args.data} not found")
    if args.texts == "long":
        texts, source = long_sentences(max(args.sentences, 2 * args.generations))
    else:
        texts, source = sentences(max(args.sentences, 2 * args.generations), args.data)
    sample = texts[: args.sentences]
    print(f"data: {source}; {len(sample)} texts, mean {np.mean([len(t) for t in sample]):.0f} chars; batch {batch}")
    print(f"device: {'CUDA ' + __import__('torch').cuda.get_device_name() if gpu else 'CPU'}, {os.cpu_count()} cores")

    # The default is what SentenceTransformer does unasked: fp32 on the GPU when there is one, else on the CPU.
    reference = TorchEncoder("cuda" if gpu else "cpu", batch_size=batch, fp16=False)
    chosen: Encoder = load_encoder("auto", default_cache_dir(), batch_size=batch)
    candidates: list[tuple[str, Encoder]] = [(f"default: {reference.name}", reference)]
    if gpu:  # fp16 through SentenceTransformer.encode itself, to show what the direct path adds
        candidates.append(("sentence-transformers fp16", TorchEncoder("cuda", batch_size=batch, fp16=True)))
    else:  # ONNX runs on the CPU only; beside a GPU it is not a candidate
        candidates.append(("onnx fp32", load_encoder("onnx", default_cache_dir(), batch_size=batch)))
    candidates.append((f"auto: {chosen.name}", chosen))
    for _, enc in candidates:
        enc.encode(sample[:64])  # warm
    seconds = alternate([lambda enc=enc: enc.encode(sample) for _, enc in candidates], args.repeats)  # type: ignore[misc]
    ref_vectors = reference.encode(sample)

    print(f"\n{'backend':34} {'sentences/s':>12} {'vs default':>11} {'cosine mean':>12} {'cosine min':>11}")
    base = len(sample) / seconds[0]
    results = {}
    for (name, enc), s in zip(candidates, seconds, strict=True):
        rate = len(sample) / s
        mean, low = cosine_agreement(enc.encode(sample), ref_vectors)
        results[name] = (rate, mean, low)
        print(f"{name:34} {rate:12.0f} {rate / base:10.2f}x {mean:12.5f} {low:11.5f}")
    rate, mean, low = results[f"auto: {chosen.name}"]
    ok = rate / base >= 2.0 and mean >= 0.99 and low >= 0.98
    print(
        f"\noptimized / default = {rate / base:.2f}x (target >= 2.0 on CPU), cosine mean {mean:.4f} (>= 0.99), "
        f"min {low:.4f} (>= 0.98): {'MET' if ok else 'NOT MET'}"
    )
    # What the int8 noise does to a similarity score: max cosine of each text to 8 reference sentences.
    refs = reference.encode(texts[-8:])
    delta = np.abs((chosen.encode(sample) @ refs.T).max(1) - (ref_vectors @ refs.T).max(1))
    print(f"similarity |optimized - default| over {len(sample)} texts: mean {delta.mean():.4f}, max {delta.max():.4f}")
    if gpu:
        print(f"GPU: {rate:.0f} sentences/s (target >= 10,000 on one H100): {'MET' if rate >= 10_000 else 'NOT MET'}")

    if not args.skip_stage:
        stage_texts = texts[: 2 * args.generations]
        backend = "torch" if gpu else "onnx-int8"
        per_call = 2 * args.flush  # the worker encodes a batch's outputs and inputs in one call

        def in_calls() -> None:
            for i in range(0, len(stage_texts), per_call):
                chosen.encode(stage_texts[i : i + per_call])

        # Rounds of (raw one call, raw in calls, stage per placement), side by side: each round's ratios, then medians
        rounds: dict[str, list[tuple[float, float, dict[str, float]]]] = {p: [] for p in placements}
        for r in range(args.repeats):
            one_s, calls_s = alternate([lambda: chosen.encode(stage_texts), in_calls], 1)
            one, calls = len(stage_texts) / one_s, len(stage_texts) / calls_s
            for placement in placements if r % 2 == 0 else placements[::-1]:
                got = stage(backend, texts, batch, args.generations, args.flush, args.workers, placement)
                rounds[placement].append((one, calls, got))
                print(
                    f"round {r + 1}, model in the {placement}: stage {got['rate']:.0f} sentences/s "
                    f"({got['batches']:.0f} batches of <= {args.flush}, steady state {got['span']:.1f}s); "
                    f"raw one call {one:.0f}, {per_call} texts per call {calls:.0f}; "
                    f"stage / raw = {got['rate'] / one:.2f} / {got['rate'] / calls:.2f}"
                )
        for placement, done in rounds.items():
            rate = statistics.median(g["rate"] for _, _, g in done)
            raw_one = statistics.median(one for one, _, _ in done)
            raw_calls = statistics.median(calls for _, calls, _ in done)
            ratio_one = statistics.median(g["rate"] / one for one, _, g in done)
            ratio_calls = statistics.median(g["rate"] / calls for _, calls, g in done)
            print(
                f"\nstage: {args.generations} generations ({len(stage_texts)} texts) via Kafka and {args.workers} "
                f"worker(s), model in the {placement}, median of {len(done)} rounds: {rate:.0f} sentences/s\n"
                f"raw encode of the same texts, same backend, one call:            {raw_one:.0f} sentences/s; "
                f"stage / raw (median of the rounds' ratios) = {ratio_one:.3f} (target >= 0.9): "
                f"{'MET' if ratio_one >= 0.9 else 'NOT MET'}\n"
                f"raw encode of the same texts, same backend, {per_call} texts per call: {raw_calls:.0f} sentences/s; "
                f"stage / raw = {ratio_calls:.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
