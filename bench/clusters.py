"""Benchmark: failure clusters on large windows.

Texts: conversation turns from the hh-rlhf file (``--data``, default ``../shared/data/…``) when present, else
everyday questions from ``streams.local.sample``; plus three planted classes of questions (refunds, Python errors,
medical), all embedded once with the project's encoder. Larger sets are made by jittering these embeddings (each
a copy of a real one plus Gaussian noise, cosine ~0.95 to it), and carry their source's text.

(a) ``--failures`` failure embeddings (a third of them from the planted classes) among as many successes: the
    whole computation (``metrics.clusters.cluster_failures``: PCA, HDBSCAN on the hashed 10,000-point sample,
    merging, regions, assignment of every generation, lift) plus the labels, against the bare HDBSCAN call it
    makes on that sample (the same reduced points), side by side, medians of ``--repeats``. Target <= 10x.
(b) what each choice costs and finds, on the 10,000-point sample: HDBSCAN after PCA to 50, 20, 10 and 5
    dimensions (and on the full 384 with ``--raw``, ~70 s on 2 cores): time, clusters, and per planted class the
    precision and recall of the cluster that holds most of it.
(c) ``--generations`` stored generations (1 million by default, 10 % failed) written as the sink lays them out,
    then ``GET /v1/clusters`` over the whole window through the API (FastAPI's test client). Target < 30 s on the
    2-core machine.

    python bench/clusters.py [--failures 100000] [--generations 1000000] [--repeats 3] [--raw] [--data PATH]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.clusters import (
    ClusterParams,
    cluster_failures,
    ctfidf_labels,
    hdbscan_labels,
    hdbscan_model,
    merge_similar,
    reduce,
    sample_rows,
    unit_rows,
)
from metrics.similarity import to_int8
from sinks.parquet import file_name
from sinks.schemas import EMBEDDINGS_SCHEMA, EVENTS_SCHEMA, SCORES_SCHEMA
from streams.local.prompts import BACKGROUND_TEMPLATES, TOPIC_TEMPLATES, topic_question

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
PLANTED_PER_CLASS = 400
START = datetime(2026, 11, 30)


def texts(data: Path) -> tuple[list[str], np.ndarray, str]:
    """Background texts then the planted classes' questions; each text's class (-1: background); the source."""
    rng = random.Random(0)
    if data.exists():
        seen: dict[str, None] = {}
        with gzip.open(data, "rt", encoding="utf-8") as fh:
            for line in fh:
                for turn in re.split(r"\n\n(?:Human|Assistant): ", json.loads(line)["chosen"]):
                    if turn.strip():
                        seen.setdefault(turn.strip(), None)
        background, source = list(seen), f"{data.name} ({len(seen)} distinct turns)"
    else:
        topics = sorted(BACKGROUND_TEMPLATES)
        background = sorted({topic_question(rng.choice(topics), rng) for _ in range(6000)})
        source = f"generated everyday questions ({len(background)})"
    planted = [topic_question(t, rng) for t in sorted(TOPIC_TEMPLATES) for _ in range(PLANTED_PER_CLASS)]
    classes = np.r_[np.full(len(background), -1), np.repeat(np.arange(len(TOPIC_TEMPLATES)), PLANTED_PER_CLASS)]
    return background + planted, classes, source


def jitter(base: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of ``base[rows]`` plus noise: cosine ~0.95 to their source, like paraphrases."""
    noise = rng.normal(0, 0.33 / np.sqrt(base.shape[1]), (len(rows), base.shape[1])).astype(np.float32)
    return unit_rows(base[rows] + noise)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def draw(classes: np.ndarray, n: int, planted_share: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` source rows: ``planted_share`` of them from the planted classes, the rest from the background."""
    planted, background = np.flatnonzero(classes >= 0), np.flatnonzero(classes < 0)
    k = int(n * planted_share)
    return np.r_[rng.choice(planted, k), rng.choice(background, n - k)]


def part_a(base: np.ndarray, corpus: list[str], classes: np.ndarray, n_failures: int, repeats: int) -> float:
    rng = np.random.default_rng(1)
    sources = np.r_[draw(classes, n_failures, 1 / 3, rng), draw(classes, n_failures, 0.02, rng)]
    vectors = jitter(base, sources, rng)
    failed = np.r_[np.ones(n_failures, bool), np.zeros(n_failures, bool)]
    keys = rng.permutation(len(vectors)).astype(np.uint64)
    params = ClusterParams()
    sample = sample_rows(keys, params.sample_cap, np.flatnonzero(failed))
    reduced = reduce(unit_rows(vectors[sample]), params.dims)

    def bare() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return hdbscan_model(params).fit(reduced)

    def whole() -> object:
        result = cluster_failures(vectors, failed, params, keys)
        label_texts = []
        for c in result.clusters:
            rows = sample_rows(keys, 300, np.flatnonzero((result.assignment == c.index) & failed))
            label_texts.append([corpus[sources[r]] for r in rows])
        background = sample_rows(keys, 500, np.flatnonzero(failed & (result.assignment < 0)))
        return result, ctfidf_labels(label_texts, [corpus[sources[r]] for r in background])

    t_bare, t_whole = [], []
    for _ in range(repeats):  # alternating, so both see the same machine
        t_bare.append(timed(bare, 1)[0])
        seconds, out = timed(whole, 1)
        t_whole.append(seconds)
    result, labels = out  # type: ignore[misc]
    ratio = statistics.median(t_whole) / statistics.median(t_bare)
    print(f"\n(a) {n_failures:,} failures among {len(vectors):,} generations, sample {len(sample):,}, "
          f"medians of {repeats} alternating runs")  # fmt: skip
    print(f"    bare HDBSCAN on the reduced sample: {statistics.median(t_bare):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in t_bare)})")  # fmt: skip
    print(f"    clusters + regions + lift + labels: {statistics.median(t_whole):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in t_whole)})")  # fmt: skip
    print(f"    ratio {ratio:.2f}x (target <= 10x: {'met' if ratio <= 10 else 'NOT MET'})")
    names = sorted(TOPIC_TEMPLATES)
    listed = [(c, label) for c, label in zip(result.clusters, labels, strict=True) if c.lift >= 1 and c.p_value < 0.01]
    print(f"    {len(result.clusters)} clusters, {len(listed)} with lift >= 1 and p < 0.01 (what the API lists):")
    for c, label in listed[:6]:
        members = sources[result.assignment == c.index]
        top = np.bincount(classes[members] + 1, minlength=len(names) + 1)
        kind = "background" if top.argmax() == 0 else names[top.argmax() - 1]
        print(f"    size {c.size:>7,} failures {c.failures:>7,} lift {c.lift:4.2f} [{kind}] {label}")
    return ratio


def part_b(base: np.ndarray, classes: np.ndarray, raw: bool) -> None:
    rng = np.random.default_rng(2)
    sources = draw(classes, 10_000, 1 / 3, rng)
    points = jitter(base, sources, rng)
    truth = classes[sources]
    print("\n(b) 10,000 failures (a third planted): metrics.clusters.hdbscan_labels (PCA, HDBSCAN, crowds split) and")
    print("    merging, by PCA dimensions (384: no PCA)")
    print("    dims | seconds | clusters -> merged | noise | planted classes: precision / recall of the cluster "
          "holding most of each")  # fmt: skip
    for dims in ([384] if raw else []) + [50, 20, 10, 5]:
        started = time.perf_counter()
        labels = hdbscan_labels(points, ClusterParams(dims=dims))
        seconds = time.perf_counter() - started
        merged = merge_similar(points, labels, ClusterParams().merge_similarity)
        found = []
        for k in range(len(TOPIC_TEMPLATES)):
            mine = truth == k
            counts = np.bincount(merged[mine & (merged >= 0)], minlength=merged.max() + 1)
            if not counts.any():
                found.append("-")
                continue
            best = merged == counts.argmax()
            found.append(f"{mine[best].mean():.2f} / {best[mine].mean():.2f}")
        print(f"    {dims:>4} | {seconds:7.2f} | {labels.max() + 1:>4} -> {merged.max() + 1:<4} | "
              f"{np.mean(merged < 0):.2f} | {' · '.join(found)}")  # fmt: skip


def write_window(root: Path, base: np.ndarray, corpus: list[str], classes: np.ndarray, n: int) -> None:
    """``n`` generations over a day, 10 % failed (planted classes fail at 60 %), as the sink lays out files:
    batches of 20,000 generations in 6 partitions."""
    rng = np.random.default_rng(3)
    sources = draw(classes, n, 0.06, rng)
    planted = classes[sources] >= 0
    failed = np.where(planted, rng.random(n) < 0.6, rng.random(n) < 0.07)
    seconds = np.sort(rng.uniform(0, 86400, n))
    ts = pa.array(np.datetime64(START, "us") + (seconds * 1e6).astype("timedelta64[us]"), pa.timestamp("us"))
    ids = pa.array(np.char.add("g", np.arange(n).astype(str)))
    labels = {"app": pa.array(np.full(n, "bot")), "route": pa.array(np.full(n, "answer")),
              "model": pa.array(np.array(["m1", "m2"])[rng.integers(0, 2, n)]),
              "prompt_version": pa.array(np.full(n, "v1"))}  # fmt: skip
    inputs = pa.array(np.array(corpus, dtype=object)[sources])
    events = {"event_id": ids, "type": pa.array(np.full(n, "generation")), "ts": ts, "generation_id": ids, **labels,
              "input": inputs, "output": pa.array(np.full(n, "answer"))}  # fmt: skip
    # one thumbs per generation: down for the failures
    thumbs = pa.array((~failed).astype(float))
    scores = {"event_id": pa.array(np.char.add("s", np.arange(n).astype(str))), "generation_id": ids, "ts": ts,
              **labels, "metric": pa.array(np.full(n, "thumbs_up")), "value": thumbs}  # fmt: skip
    chunk = 100_000
    flat = np.concatenate([to_int8(jitter(base, sources[i : i + chunk], rng)) for i in range(0, n, chunk)])
    embeddings = {"event_id": ids, "generation_id": ids, "ts": ts, **labels, "encoder": pa.array(np.full(n, "bench")),
                  "input_embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), 384)}  # fmt: skip
    batch, parts = 20_000, 6
    for name, schema, columns in (("events", EVENTS_SCHEMA, events), ("scores", SCORES_SCHEMA, scores),
                                  ("embeddings", EMBEDDINGS_SCHEMA, embeddings)):  # fmt: skip
        table = pa.table({f: columns.get(f, pa.nulls(n, schema.field(f).type)) for f in schema.names})
        folder = root / name / f"dt={START.date().isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, n, batch):
            for p in range(parts):
                rows = np.arange(start + p, min(start + batch, n), parts)
                pq.write_table(table.take(rows), folder / file_name("llm.events", p, start, start + batch - 1),
                               compression="zstd")  # fmt: skip


def part_c(base: np.ndarray, corpus: list[str], classes: np.ndarray, n: int, repeats: int) -> float:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings, get_settings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_window(root, base, corpus, classes, n)
        print(f"\n(c) wrote {n:,} generations in {time.perf_counter() - started:.0f} s; GET /v1/clusters over them")
        app = create_app()
        app.dependency_overrides[get_settings] = lambda: ApiSettings(data_dir=root, clusters_cache_s=0)
        client = TestClient(app)
        params = {"since": START.isoformat() + "Z", "until": (START + timedelta(days=1)).isoformat() + "Z"}
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            body = client.get("/v1/clusters", params=params).json()
            runs.append(time.perf_counter() - started)
        median = statistics.median(runs)
        print(f"    {median:.1f} s (runs {', '.join(f'{t:.1f}' for t in runs)}); target < 30 s: "
              f"{'met' if median < 30 else 'NOT MET'}")  # fmt: skip
        print(f"    {body['generations']:,} generations, {body['failures']:,} failures, {body['count']} clusters "
              f"listed, {body['noise']:,} failures in no cluster")  # fmt: skip
        for c in body["data"][:5]:
            print(f"    {c['cluster_id']:>5} size {c['size']:>7,} failures {c['failures']:>7,} lift {c['lift']:.2f} "
                  f"{c['label']}")  # fmt: skip
        return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failures", type=int, default=100_000)
    parser.add_argument("--generations", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--raw", action="store_true", help="also HDBSCAN on the full 384 dimensions in (b)")
    parser.add_argument("--data", type=Path, default=SHARED, help="hh-rlhf JSONL (gzipped)")
    parser.add_argument("--skip-api", action="store_true", help="leave out (c)")
    args = parser.parse_args()
    if args.data != SHARED and not args.data.exists():
        parser.error(f"--data {args.data}: no such file")
    from streams.embedding.encoder import load_encoder

    corpus, classes, source = texts(args.data)
    encoder = load_encoder()
    started = time.perf_counter()
    base = unit_rows(encoder.encode(corpus))
    name = getattr(encoder, "name", "the encoder")
    print(f"data: {source} + {len(TOPIC_TEMPLATES)} planted classes x {PLANTED_PER_CLASS}; embedded "
          f"{len(corpus):,} texts with {name} in {time.perf_counter() - started:.0f} s")  # fmt: skip
    ratio = part_a(base, corpus, classes, args.failures, args.repeats)
    part_b(base, classes, args.raw)
    ok = ratio <= 10
    if not args.skip_api:
        ok = part_c(base, corpus, classes, args.generations, args.repeats) < 30 and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
