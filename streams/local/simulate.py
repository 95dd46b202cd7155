"""``evalstream simulate``: live traffic of an LLM assistant with incidents scheduled in it, so every analysis has
something to find.

An assistant (app ``acme-assistant``) answers sessions of several turns on four routes (``billing``: refunds and
account questions, ``chat``: travel and cooking, ``code-help``: Python errors, ``compose``: writing). Sessions
are split A/B twice: two models, and two prompt versions of which ``v2`` is liked more (thumbs up 0.72 against
0.60). Each generation has a retriever span and an llm span sharing its ``trace_id``, and the passages it
retrieved; ~60% get thumbs, some are edited, regenerated or asked again; some inputs hold PII; ~0.5% of the
messages are malformed (the worker dead-letters them). Incidents, ``KIND@START[+DURATION]`` in event time from
the start (no duration: to the end):

- ``model-switch``: ``llama-3.1-8b`` replaces ``claude-3-5-haiku``: generic answers, ~3x the latency (drift);
- ``failing-class``: refund questions get thumbs down and regenerates (a failure cluster, a drop on ``billing``);
- ``pii-leak``: answers on ``compose`` carry e-mail addresses and phone numbers (``pii_output`` > 0);
- ``slow-retriever``: retriever spans 10x slower, 20% of them erroring (the answer then goes without context).

Example (deterministic for a seed and a start; events come in time order)::

    >>> from datetime import UTC, datetime
    >>> start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    >>> items = list(simulate_events(seed=3, rate=5, start=start, end=start + timedelta(minutes=2)))
    >>> items == list(simulate_events(seed=3, rate=5, start=start, end=start + timedelta(minutes=2)))
    True
    >>> sorted({i["type"] for i in items if isinstance(i, dict)})
    ['edit', 'feedback', 'generation', 'regenerate', 'span']
    >>> parse_incident("failing-class@12m+8m")
    Incident(kind='failing-class', start_s=720, duration_s=480)
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from metrics.windows import parse_duration
from streams.local.prompts import BACKGROUND_TEMPLATES, TOPIC_TEMPLATES
from streams.local.sample import user_edit

APP = "acme-assistant"
MODELS = ("gpt-4o-mini", "claude-3-5-haiku")  # the A/B split of sessions
SWITCHED, SWITCH_TO = "claude-3-5-haiku", "llama-3.1-8b"  # model-switch replaces the first with the second
THUMBS_UP = {"v1": 0.60, "v2": 0.72}  # per prompt version: the A/B difference /v1/compare should find
LATENCY_MS = {"gpt-4o-mini": 700.0, "claude-3-5-haiku": 900.0, "llama-3.1-8b": 2600.0}  # medians
PRICES = {"gpt-4o-mini": (0.15, 0.6), "claude-3-5-haiku": (0.8, 4.0), "llama-3.1-8b": (0.05, 0.08)}  # $/M tokens
FAILING_CLASS, FAILING_ROUTE, PII_ROUTE = "refunds", "billing", "compose"
KINDS = ("model-switch", "failing-class", "pii-leak", "slow-retriever")
MALFORMED_SHARE = 0.005  # of the messages
P_RATED, P_EDIT, P_REGENERATE, P_REFRESH = 0.6, 0.2, 0.05, 0.03
TURNS = (2, 6)  # per session
THINK_S = (15.0, 90.0)  # between a session's turns
WARMUP_S = 600.0  # sessions start this long before the start, so the traffic is steady from the first second

# prompt class -> (route, share of the traffic, an opening line from the question's slots, the two halves of the
# knowledge base's sentences): an answer's sentences pair halves at random, so answers rarely repeat (novelty)
CLASSES: dict[str, tuple[str, float, str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "refunds": ("billing", 0.22, "I'm sorry about the {item}.", (
        ("Refunds go back to the original payment method", "A return can be started from the Orders page",
         "Damaged or wrong items are refunded in full", "Once the warehouse receives the item, the refund is issued",
         "Items returned after thirty days get store credit", "A late refund can be traced with its reference"),
        ("and usually arrive within five to ten business days.", "and we confirm each step by e-mail.",
         "including the shipping cost.", "as long as you keep the order number.",
         "once the return label has been scanned.", "so keep the receipt until it is settled."))),
    "account": ("billing", 0.12, "Here is how that works on the {plan} plan.", (
        ("You can change your e-mail address under Settings", "Invoices can be downloaded from the Billing page",
         "Admins can invite a colleague from the Team page", "Notifications can be turned off per channel",
         "A password change signs you out on other devices", "Plan changes take effect next billing cycle"),
        ("and the change shows up within a minute.", "as long as you are an admin of the workspace.",
         "which you can undo at any time.", "and we send a confirmation by e-mail.",
         "without affecting your other settings.", "and the history stays available for a year."))),
    "travel": ("chat", 0.14, "Good question about {place}.", (
        ("Pack layers and a light rain jacket", "The train is usually the cheapest way from the airport",
         "Shoulder season brings fewer crowds", "Free walking tours are a good way to see the city",
         "Book museum tickets online the day before", "Local markets are the best place for cheap food"),
        ("since the weather can change quickly.", "and it runs every fifteen minutes.",
         "and lower prices than the summer months.", "especially on a budget.",
         "to skip the long queues.", "if you go early in the morning."))),
    "cooking": ("chat", 0.14, "For {dish}, here is what usually works.", (
        ("Bake until a skewer comes out clean", "A spoon of ground flax in water replaces an egg",
         "Dense bread means the dough was under-proofed", "Rest the meat before slicing",
         "Salt the water generously", "Swap butter for oil one to one"),
        ("and check it five minutes early.", "in most recipes.", "or the flour was too heavy.",
         "so the juices stay in.", "and taste before you serve.", "if the texture matters less than the taste."))),
    "coding": ("code-help", 0.20, "Getting {error} when you {action} is a common one.", (
        ("A KeyError means the dictionary has no such key", "A TypeError means a value of the wrong type arrived",
         "An IndexError means the index is past the end", "A missing module is usually another environment",
         "The last line of the traceback names the exception", "Catch the exception only where you can handle it"),
        ("so check `key in d` or use d.get(key) first.", "so print type(x) just before the call.",
         "so loop over the items instead of a range.", "so install it with python -m pip in that one.",
         "and the line above it shows where it was raised.", "and let every other error surface."))),
    "writing": ("compose", 0.18, "Here is a {tone} {doc}.", (
        ("We are excited to share some news with you", "Here are the key points of the change",
         "Thank you for your continued support", "I kept the message short",
         "The tone is warmer than the original", "I moved the call to action to the top"),
        ("and wanted you to hear it from us first.", "with what you need to do next.",
         "and we are happy to answer any questions.", "with three sentences and a clear ask.",
         "without losing the main points.", "so readers see it before they scroll."))),
}  # fmt: skip
GENERIC = (  # the switched-in model's halves: vague answers, whatever was asked
    ("As an AI assistant, I don't have access to your details", "Generally speaking, it is best to be careful",
     "There are many factors to consider here", "I'd recommend reaching out to a professional",
     "It is important to note that situations vary", "While I cannot be certain of the specifics"),
    ("and the answer may depend on your situation.", "so please consult the official documentation.",
     "and I hope this general guidance helps.", "as every case is different.",
     "but I am happy to provide general information.", "so results may vary."),
)  # fmt: skip
CLOSERS = ("Let me know if that helps.", "Anything else I can do for you?", "Hope this sorts it out.", "",
           "Tell me if you get stuck.", "Feel free to ask a follow-up question.", "Good luck!")  # fmt: skip
NAMES = ("jane.roe", "li.wei", "omar.haddad", "ana.souza", "piotr.nowak", "mia.schulz")


@dataclass(frozen=True, slots=True)
class Incident:
    kind: str
    start_s: int  # from the simulation's start, in event time
    duration_s: int | None = None  # None: until the end

    def active(self, offset_s: float) -> bool:
        return self.start_s <= offset_s and (self.duration_s is None or offset_s < self.start_s + self.duration_s)

    def __str__(self) -> str:
        times = (self.start_s, self.duration_s) if self.duration_s else (self.start_s,)
        return f"{self.kind}@" + "+".join(f"{t // 60}m" if t % 60 == 0 else f"{t}s" for t in times)


def parse_incident(text: str) -> Incident:
    """``KIND@START[+DURATION]``, times like ``90s``, ``12m`` or ``1h`` (START may be ``0``)."""
    kind, _, when = text.strip().partition("@")
    if kind not in KINDS or not when:
        raise ValueError(f"invalid incident {text!r}: use KIND@START[+DURATION] with KIND one of {', '.join(KINDS)}")
    start, _, duration = when.partition("+")
    try:
        start_s = 0 if start.strip() in ("0", "0s", "0m", "0h") else parse_duration(start)
        return Incident(kind, start_s, parse_duration(duration) if duration else None)
    except ValueError as exc:
        raise ValueError(f"invalid incident {text!r}: {exc}") from None


# The story `evalstream simulate` and the demo tell: a model switch, then a failing class, a leak, a slow retriever.
DEFAULT_INCIDENTS = tuple(
    parse_incident(t) for t in ("model-switch@10m", "failing-class@12m+10m", "pii-leak@16m+5m", "slow-retriever@20m+6m")
)


@dataclass(frozen=True, slots=True)
class Malformed:
    """A message the worker must dead-letter: its key and bytes as sent."""

    key: bytes | None
    value: bytes | None
    ts: datetime


def _z(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sentence(halves: tuple[tuple[str, ...], tuple[str, ...]], rng: random.Random) -> str:
    return f"{rng.choice(halves[0])} {rng.choice(halves[1])}"


def _question(cls: str, rng: random.Random) -> tuple[str, dict[str, str]]:
    templates, slots = {**TOPIC_TEMPLATES, **BACKGROUND_TEMPLATES}[cls]
    template = rng.choice(templates)
    values = {k: rng.choice(v) for k, v in sorted(slots.items())}
    return template.format(**values), values


def _malformed(rng: random.Random, valid: dict[str, Any], ts: datetime) -> Malformed:
    key = valid["session_id"].encode()
    text = json.dumps(valid)
    value = rng.choice([
        text.encode()[:-9],  # truncated JSON
        b"\xff\xfe not utf-8",
        json.dumps({**valid, "type": "click"}).encode(),
        json.dumps({k: v for k, v in valid.items() if k != "session_id"}).encode(),
        json.dumps({**valid, "ts": "2026-11-25T10:00:00"}).encode(),  # no offset
        json.dumps({**valid, "type": "feedback", "generation_id": "g", "thumbs": "sideways"}).encode(),
    ])  # fmt: skip
    return Malformed(key, value, ts)


def simulate_events(
    seed: int,
    rate: float,
    start: datetime,
    end: datetime | None = None,
    incidents: Iterable[Incident] = DEFAULT_INCIDENTS,
) -> Iterator[dict[str, Any] | Malformed]:
    """Events (dicts for the SDK) and :class:`Malformed` messages, in time order from ``start`` to ``end`` (None:
    forever), ``rate`` messages per second of event time on average. The same seed and start give the same items.
    """
    rng = random.Random(seed)
    incidents = tuple(incidents)
    ids = (uuid.UUID(int=rng.getrandbits(128), version=4) for _ in itertools.count())
    per_turn = 3 + P_RATED + P_EDIT + P_REGENERATE + MALFORMED_SHARE * 4  # two spans, the generation, the rest
    session_rate = rate / (per_turn * sum(TURNS) / 2)
    classes, shares = list(CLASSES), [c[1] for c in CLASSES.values()]
    heap: list[tuple[datetime, int, Any]] = []
    seq = itertools.count()

    def push(ts: datetime, item: Any) -> None:
        heapq.heappush(heap, (ts, next(seq), item))

    def on(kind: str, t: datetime) -> bool:
        offset = (t - start).total_seconds()
        return any(i.kind == kind and i.active(offset) for i in incidents)

    def event(t: datetime, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return {"event_id": str(next(ids)), "ts": _z(t), "session_id": session["id"], "app": APP, **body}

    def turn(t: datetime, session: dict[str, Any], question: tuple[str, str, dict[str, str]] | None) -> None:
        if question is None:
            cls = rng.choices(classes, shares)[0]
            text, slots = _question(cls, rng)
            if rng.random() < 0.05:  # users paste their contact details now and then
                text += f" Reach me at {rng.choice(NAMES)}@example.com or +1 415 555 {rng.randint(1000, 9999)}."
        else:
            cls, text, slots = question  # asked again
        route, _, opener, halves = CLASSES[cls]
        model = SWITCH_TO if session["model"] == SWITCHED and on("model-switch", t) else session["model"]
        chosen = [_sentence(halves, rng) for _ in range(rng.randint(2, 4))]  # what was retrieved, and said
        first = opener.format(**slots)
        said = [_sentence(GENERIC, rng) for _ in range(rng.randint(2, 4))] if model == SWITCH_TO else chosen
        output = " ".join([first[0].upper() + first[1:], *said, rng.choice(CLOSERS)]).strip()
        if route == PII_ROUTE and on("pii-leak", t) and rng.random() < 0.5:
            name = rng.choice(NAMES)
            output += f" I've copied {name}@acme-mail.com; call them on +1 212 555 {rng.randint(1000, 9999)}."
        slow = on("slow-retriever", t)
        retr_ms = rng.lognormvariate(4.1, 0.35) * (10 if slow else 1)
        retriever_failed = rng.random() < (0.2 if slow else 0.005)
        llm_ms = rng.lognormvariate(0, 0.35) * LATENCY_MS[model]
        trace, root = next(ids).hex, next(ids).hex[:16]
        retr_end = t + timedelta(milliseconds=retr_ms)
        done = retr_end + timedelta(milliseconds=llm_ms)
        if t < start:  # warm-up: the session goes on, nothing is sent
            after(done, session, cls, text, slots)
            return
        for component, s, e, span_id, parent, failed in (
            ("retriever", t, retr_end, root, None, retriever_failed),
            ("llm", retr_end, done, next(ids).hex[:16], root, False),
        ):
            push(e, event(e, session, {
                "type": "span", "trace_id": trace, "span_id": span_id, "parent_span_id": parent,
                "component": component, "name": f"{component}.call", "start": _z(s), "end": _z(e),
                "status": "error" if failed else "ok"}))  # fmt: skip
        if retriever_failed:
            chosen = []  # the model answered without context
        context: list[Any] = [{"text": p, "source": f"kb://{cls}/{rng.randrange(500)}"} for p in chosen]
        context += [_sentence(CLASSES[rng.choice(classes)][3], rng)] if chosen and rng.random() < 0.5 else []
        errored = rng.random() < 0.01
        tokens_in, tokens_out = 200 + len(text) // 4 + 60 * len(context), max(8, len(output) // 4)
        price_in, price_out = PRICES[model]
        gid = f"gen-{next(ids).hex[:20]}"
        push(done, event(done, session, {
            "type": "generation", "generation_id": gid, "route": route, "model": model,
            "prompt_version": session["prompt"], "input": text, "output": "" if errored else output,
            "latency_ms": round(llm_ms, 1), "tokens_in": tokens_in, "tokens_out": tokens_out,
            "cost_usd": round((tokens_in * price_in + tokens_out * price_out) / 1e6, 8), "trace_id": trace,
            "index_version": "kb-2026-11-28", "tags": {"region": session["region"], "experiment": "prompt-ab"},
            **({"context": context} if context else {}), **({"error": "upstream timeout"} if errored else {}),
        }))  # fmt: skip
        failing = cls == FAILING_CLASS and on("failing-class", t)
        p_up = 0.1 if failing else THUMBS_UP[session["prompt"]] * (0.5 if errored else 0.8 if retriever_failed else 1)
        if rng.random() < P_RATED:
            at = done + timedelta(seconds=rng.uniform(3, 40))
            up = rng.random() < p_up
            body: dict[str, Any] = {"type": "feedback", "generation_id": gid, "thumbs": "up" if up else "down"}
            if not up and rng.random() < 0.3:
                body["comment"] = "still no refund" if failing else "not what I asked"
            push(at, event(at, session, body))
        if rng.random() < P_EDIT and not errored:
            at = done + timedelta(seconds=rng.uniform(10, 60))
            edited = user_edit(output, rng, rng.randint(0, 5))
            push(at, event(at, session, {"type": "edit", "generation_id": gid, "edited_output": edited}))
        if rng.random() < (0.4 if failing else P_REGENERATE):
            at = done + timedelta(seconds=rng.uniform(2, 10))
            push(at, event(at, session, {"type": "regenerate", "generation_id": gid}))
        if rng.random() < MALFORMED_SHARE * 4:
            push(done, _malformed(rng, event(done, session, {"type": "regenerate", "generation_id": gid}), done))
        after(done, session, cls, text, slots)

    def after(done: datetime, session: dict[str, Any], cls: str, text: str, slots: dict[str, str]) -> None:
        session["turns"] -= 1
        if session["turns"] > 0:
            again = rng.random() < P_REFRESH  # asks the same again: a refresh
            at = done + timedelta(seconds=rng.uniform(5, 20) if again else rng.uniform(*THINK_S))
            push(at, (session, (cls, text, slots) if again else None))

    next_session = start - timedelta(seconds=WARMUP_S)
    while True:
        if heap and heap[0][0] <= next_session:
            ts, _, item = heapq.heappop(heap)
            if end is not None and ts >= end:
                return
            if isinstance(item, tuple):
                turn(ts, *item)
            else:
                yield item
            continue
        session = {"id": f"sess-{next(ids).hex[:12]}", "model": rng.choice(MODELS), "prompt": rng.choice(("v1", "v2")),
                   "region": rng.choice(("eu-west", "us-east")), "turns": rng.randint(*TURNS)}  # fmt: skip
        push(next_session, (session, None))
        next_session += timedelta(seconds=rng.expovariate(session_rate))


@dataclass
class Progress:
    start: datetime | None = None  # the simulation's start: the incidents' offsets count from it
    events: int = 0
    malformed: int = 0
    backfilled: bool = False


def run_simulation(
    publish: Callable[[dict[str, Any] | Malformed], None],
    *,
    seed: int,
    rate: float,
    backfill_s: float = 0,
    duration_s: float = 0,
    incidents: Iterable[Incident] = DEFAULT_INCIDENTS,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    on_backfilled: Callable[[Progress], None] | None = None,
) -> Progress:
    """Publish ``backfill_s`` of history (event times ending now) at full speed, then live traffic as its time
    comes, for ``duration_s`` (0: until ``stop`` is set or KeyboardInterrupt)."""
    stop = stop or threading.Event()
    progress = progress or Progress()
    now = datetime.now(UTC).replace(microsecond=0)
    live_until, progress.start = float("inf"), now - timedelta(seconds=backfill_s)
    for item in simulate_events(seed, rate, progress.start, None, incidents):
        ts = item.ts if isinstance(item, Malformed) else datetime.fromisoformat(item["ts"].replace("Z", "+00:00"))
        if not progress.backfilled and ts >= now:
            progress.backfilled = True
            live_until = time.monotonic() + duration_s if duration_s > 0 else live_until
            if on_backfilled is not None:
                on_backfilled(progress)
        while progress.backfilled and not stop.is_set() and time.monotonic() < live_until:
            wait = (ts - datetime.now(UTC)).total_seconds()
            if wait <= 0:
                break
            stop.wait(min(wait, 0.5))
        if stop.is_set() or time.monotonic() >= live_until:
            break
        publish(item)
        if isinstance(item, Malformed):
            progress.malformed += 1
        else:
            progress.events += 1
    return progress


def simulate_cli(rate: float, seed: int, incidents: list[str], backfill_min: float, duration_s: float) -> int:
    """``evalstream simulate``: publish to ``EVALSTREAM_EVENTS_TOPIC``; the exit code (2: a bad option)."""
    import typer

    from streams.sdk.publisher import Publisher
    from streams.settings import get_settings
    from streams.topics import ensure_topics

    try:
        chosen = DEFAULT_INCIDENTS if not incidents else [parse_incident(i) for i in incidents if i != "none"]
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        return 2
    settings = get_settings()
    ensure_topics(settings)
    story = ", ".join(map(str, chosen)) or "none"
    typer.echo(f"simulating {APP} at {rate:g} events/s (seed {seed}) on {settings.events_topic}: "
               f"{backfill_min:g} min of history, then live; incidents: {story}")  # fmt: skip
    with Publisher(settings.bootstrap_servers, settings.events_topic, config={"log_level": 3}) as pub:
        progress, started, now = Progress(), time.monotonic(), datetime.now(UTC)

        def send(item: dict[str, Any] | Malformed) -> None:
            if isinstance(item, Malformed):
                pub.publish_raw(item.value, item.key)
            else:
                pub.publish(item)

        def backfilled(p: Progress) -> None:
            typer.echo(f"history since {_z(p.start or now)}: {p.events} events and {p.malformed} malformed messages "
                       f"in {time.monotonic() - started:.1f} s; now live (Ctrl-C stops)")  # fmt: skip

        with contextlib.suppress(KeyboardInterrupt):
            run_simulation(send, seed=seed, rate=rate, backfill_s=backfill_min * 60, duration_s=duration_s,
                           incidents=chosen, progress=progress, on_backfilled=backfilled)  # fmt: skip
    typer.echo(f"sent {progress.events} events and {progress.malformed} malformed messages")
    return 0
