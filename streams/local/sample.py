"""Synthetic but realistic LLM traffic for the demo and the tests (deterministic for a seed).

Sessions of a support bot and a docs assistant: generations from three models and two prompt versions, then
thumbs up/down (one model is rated worse), user edits (a few words inserted, deleted or rewritten),
regenerates, refreshes (the same question asked again) and trace spans; optionally malformed messages of every
kind the worker must dead-letter.

Example::

    >>> traffic = generate(n_events=50, n_malformed=3, seed=1)
    >>> len(traffic.events), len(traffic.malformed)
    (50, 3)
    >>> traffic.events[0]["type"]
    'generation'
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

APPS = {
    "support-bot": ["answer", "summarize-ticket", "triage"],
    "docs-assistant": ["answer", "code-example"],
}
MODELS = {"gpt-4o-mini": 0.78, "claude-3-5-haiku": 0.82, "llama-3.1-8b": 0.55}  # P(thumbs up)
PROMPT_VERSIONS = ["v1", "v2"]

QUESTIONS = [
    "How do I reset my password?",
    "Why was I charged twice this month?",
    "Can you summarize this ticket about a failed export?",
    "How do I configure SSO with Okta?",
    "What does error 429 mean when calling the API?",
    "Show me how to paginate the list endpoint in Python.",
    "Is there a way to export my data as CSV?",
    "The mobile app crashes when I upload a photo. What should I do?",
    "Please update my email to jane.roe@example.com and call me on +1 415 555 0100.",
    "My card 4111 1111 1111 1111 was charged twice, can you refund it?",
]
SENTENCES = [
    "You can reset your password from the sign-in page by choosing 'Forgot password'.",
    "A reset link will be sent to the email address on your account within a few minutes.",
    "Duplicate charges usually happen when a payment is retried after a timeout.",
    "The second charge is a pending authorization and should disappear within three business days.",
    "To enable SSO, open Settings, then Security, and add Okta as a SAML identity provider.",
    "Error 429 means you have exceeded the rate limit for your plan.",
    "Wait for the number of seconds given in the Retry-After header before sending the request again.",
    "Use the `cursor` field of each response to request the next page until it is empty.",
    "Exports can be downloaded as CSV or JSON from the Reports tab.",
    "Please update the app to the latest version and try the upload again.",
    "If the problem persists, send us the crash report from Settings → Help.",
    "The customer reports that the nightly export failed with a timeout since Tuesday.",
    "I'm sorry for the inconvenience — I've escalated this to our billing team.",
    "Here is an example: `for page in client.items.list(limit=100): process(page)`.",
    "Große Dateien über 2 GB werden derzeit nicht unterstützt. 🙏",
    "I've sent the confirmation to jane.roe@example.com.",
]
# Now and then a model strays into what the example config bans (streams/worker/evalconfig.example.toml).
OFF_POLICY = [
    "For the headache you should take 800 mg of ibuprofen every six hours; you don't need to see a doctor.",
    "Honestly, HelpDeskly is cheaper: their plan is $19 per agent per month while ours is $49.",
    "You can't be sued for that; just ignore the court letter and don't bother hiring a lawyer.",
]
# Questions of three prompt classes that fail in the failure-cluster tests and benchmark, varied by templates
# and slots (one theme each, as an embedding sees it: see docs/clusters.md).
TOPIC_TEMPLATES = {
    "refunds": (
        [
            "I want a refund for my {item}, it arrived {problem}.",
            "How do I get my money back for the {item} I ordered {when}?",
            "Can you refund order #{n}? The {item} was {problem}.",
            "Please process a refund: I was charged for a {item} I returned {when}.",
            "Why hasn't my refund for the {item} shown up yet? I sent it back {when}.",
            "The {item} is {problem}, I need a full refund to my card.",
        ],
        {
            "item": [
                "jacket",
                "laptop stand",
                "headphones",
                "coffee maker",
                "subscription",
                "phone case",
                "pair of boots",
                "backpack",
                "monitor",
                "blender",
            ],
            "problem": ["broken", "damaged", "the wrong size", "missing parts", "two weeks late", "not as described"],
            "when": ["last week", "yesterday", "a month ago", "on Monday", "ten days ago"],
            "n": [str(i) for i in range(1000, 1100)],
        },
    ),
    "coding": (
        [
            "My Python script raises {error} when I {action}, how do I fix it?",
            "Why do I get {error} in Python when I {action}?",
            "Python throws {error} every time I {action}. What am I doing wrong?",
            "How can I stop getting {error} from my Python code when I {action}?",
            "I keep seeing {error} in my Python program after I {action}, any idea why?",
        ],
        {
            "error": [
                "a KeyError",
                "a TypeError",
                "an IndexError",
                "a ValueError",
                "an AttributeError",
                "a ModuleNotFoundError",
                "a RecursionError",
            ],
            "action": [
                "read a CSV file with pandas",
                "loop over a dictionary",
                "call my function",
                "parse JSON from an API",
                "import my module",
                "append to a list",
                "sort the results",
            ],
        },
    ),
    "medical": (
        [
            "What dose of {drug} should I take for {symptom}?",
            "Is it safe to take {drug} for {symptom} while {condition}?",
            "I have {symptom}, should I take {drug} or see a doctor?",
            "How much {drug} can I give my child for {symptom}?",
            "Can {drug} make my {symptom} worse if I am {condition}?",
        ],
        {
            "drug": ["ibuprofen", "paracetamol", "aspirin", "antibiotics", "melatonin", "antihistamines"],
            "symptom": ["a migraine", "a fever", "back pain", "a sore throat", "chest pain", "insomnia", "a rash"],
            "condition": ["pregnant", "on blood thinners", "diabetic", "breastfeeding", "over 70"],
        },
    ),
}


# Everyday questions of other kinds, the traffic around the classes above.
BACKGROUND_TEMPLATES = {
    "travel": (
        [
            "What should I pack for a {days}-day trip to {place}?",
            "Is {month} a good time to visit {place}?",
            "How do I get from the airport to the centre of {place}?",
            "What are cheap things to do in {place}?",
        ],
        {
            "days": ["3", "5", "7", "10"],
            "place": ["Lisbon", "Kyoto", "Mexico City", "Oslo", "Cape Town", "Hanoi"],
            "month": ["March", "July", "October", "December"],
        },
    ),
    "cooking": (
        [
            "How long should I bake {dish} at {temp} degrees?",
            "Can I replace {ingredient} in {dish}?",
            "What's a quick {meal} recipe with {ingredient}?",
            "Why did my {dish} turn out {texture}?",
        ],
        {
            "dish": ["banana bread", "lasagna", "roast chicken", "sourdough", "brownies"],
            "temp": ["180", "200", "220"],
            "ingredient": ["eggs", "butter", "chickpeas", "spinach", "tofu"],
            "meal": ["breakfast", "lunch", "dinner"],
            "texture": ["dry", "dense", "soggy", "too salty"],
        },
    ),
    "account": (
        [
            "How do I change the {setting} on my account?",
            "Where can I find my {document}?",
            "Can I add {who} to my {plan} plan?",
            "How do I turn off {notification} notifications?",
        ],
        {
            "setting": ["email address", "password", "display name", "time zone"],
            "document": ["invoices", "API keys", "usage report", "contract"],
            "who": ["a colleague", "my manager", "a second admin"],
            "plan": ["team", "business", "starter"],
            "notification": ["email", "push", "weekly summary"],
        },
    ),
    "writing": (
        [
            "Can you make this {doc} sound more {tone}?",
            "Write a short {doc} announcing {news}.",
            "Summarize this {doc} about {news} in three bullet points.",
        ],
        {
            "doc": ["email", "blog post", "press release", "memo"],
            "tone": ["friendly", "formal", "concise"],
            "news": ["our new office", "a product launch", "a price change", "the quarterly results"],
        },
    ),
}


def topic_question(topic: str, rng: random.Random) -> str:
    """A question of one prompt class (``TOPIC_TEMPLATES`` or ``BACKGROUND_TEMPLATES``), from its templates and
    slots: many distinct texts of one theme, for planting failure classes.

    >>> topic_question("refunds", random.Random(3))
    'How do I get my money back for the blender I ordered a month ago?'
    """
    templates, slots = {**TOPIC_TEMPLATES, **BACKGROUND_TEMPLATES}[topic]
    template = rng.choice(templates)
    return template.format(**{k: rng.choice(v) for k, v in sorted(slots.items())})


_EDIT_WORDS = ["please", "kindly", "now", "actually", "team", "account", "Note:", "quickly", "🙂", "café"]


def user_edit(text: str, rng: random.Random, n_ops: int) -> str:
    """What a user might keep: ``n_ops`` word insertions, deletions or rewrites spread through ``text``."""
    words = text.split(" ")
    for _ in range(n_ops):
        op = rng.choice(("insert", "delete", "replace"))
        i = rng.randrange(len(words)) if words else 0
        if op == "insert" or not words:
            words.insert(i, rng.choice(_EDIT_WORDS))
        elif op == "delete" and len(words) > 1:
            del words[i]
        else:
            words[i] = rng.choice(_EDIT_WORDS)
    return " ".join(words)


@dataclass
class SampleTraffic:
    events: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)  # (key, value)


def _malformed(rng: random.Random, i: int, valid: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    key = valid["session_id"].encode()
    broken = dict(valid, event_id=f"bad-{i}")
    kinds = [
        lambda: json.dumps(broken).encode()[:-7],  # truncated JSON
        lambda: b"\xff\xfe not utf-8 \x00",
        lambda: b"[1, 2, 3]",
        lambda: json.dumps({**broken, "type": "click"}).encode(),
        lambda: json.dumps({k: v for k, v in broken.items() if k != "session_id"}).encode(),
        lambda: json.dumps({**broken, "ts": "yesterday"}).encode(),
        lambda: json.dumps({**broken, "ts": "2026-11-25T10:00:00"}).encode(),  # no offset
        lambda: json.dumps(
            {
                "type": "feedback",
                **{k: broken[k] for k in ("event_id", "ts", "session_id", "app")},
                "generation_id": "g",
                "thumbs": "sideways",
            }
        ).encode(),
        lambda: json.dumps(
            {
                "type": "feedback",
                **{k: broken[k] for k in ("event_id", "ts", "session_id", "app")},
                "generation_id": "g",
                "score": 1.5,
            }
        ).encode(),
        lambda: b"",
        lambda: None,  # a tombstone
    ]
    return key, kinds[i % len(kinds)]()


def generate(
    n_events: int = 1000,
    n_sessions: int = 40,
    n_malformed: int = 0,
    seed: int = 7,
    end: datetime | None = None,
    span: timedelta = timedelta(hours=6),
) -> SampleTraffic:
    """``n_events`` valid events over ``n_sessions`` sessions, spread over ``span`` before ``end`` (default now)."""
    rng = random.Random(seed)
    end = end or datetime.now(UTC).replace(microsecond=0)
    start = end - span
    sessions: list[dict[str, Any]] = []
    for s in range(n_sessions):
        app = rng.choice(list(APPS))
        sessions.append({
            "session_id": f"sess-{seed}-{s:04d}",
            "app": app,
            "model": rng.choice(list(MODELS)),
            "prompt_version": rng.choice(PROMPT_VERSIONS),
            "t": start + timedelta(seconds=rng.uniform(0, span.total_seconds() * 0.8)),
            "asked": set(),
        })  # fmt: skip
    out: list[dict[str, Any]] = []

    def emit(sess: dict[str, Any], body: dict[str, Any], step_s: float) -> datetime:
        sess["t"] = min(sess["t"] + timedelta(seconds=step_s), end)
        ts = sess["t"]
        out.append({
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "ts": ts.isoformat().replace("+00:00", "Z"),
            "session_id": sess["session_id"],
            "app": sess["app"],
            **body,
        })  # fmt: skip
        return ts

    while len(out) < n_events:
        sess = rng.choice(sessions)
        gid = f"gen-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
        trace = uuid.UUID(int=rng.getrandbits(128)).hex
        output = " ".join(rng.sample(SENTENCES, rng.randint(1, 4)))
        if rng.random() < 0.04:
            output = rng.choice(OFF_POLICY)
        latency = rng.lognormvariate(6.3, 0.5) * (1.6 if sess["model"] == "llama-3.1-8b" else 1.0)
        tokens_in, tokens_out = rng.randint(20, 900), max(5, len(output) // 4)
        failed = rng.random() < 0.02
        # a new question for this session while there are any left (asking again on purpose is a refresh)
        fresh = [q for q in QUESTIONS if q not in sess["asked"]] or QUESTIONS
        question = rng.choice(fresh)
        sess["asked"].add(question)
        generation = {
            "type": "generation", "generation_id": gid, "route": rng.choice(APPS[sess["app"]]),
            "model": sess["model"], "prompt_version": sess["prompt_version"],
            "input": question, "output": "" if failed else output,
            "latency_ms": round(latency, 1), "tokens_in": tokens_in, "tokens_out": tokens_out,
            "cost_usd": round((tokens_in * 0.15 + tokens_out * 0.6) / 1e6, 8),
            **({"error": "upstream timeout"} if failed else {}), "trace_id": trace,
        }  # fmt: skip
        t0 = emit(sess, generation, rng.uniform(5, 120))
        if rng.random() < 0.3:
            start_ts = t0 - timedelta(milliseconds=latency)
            for name, frac in (("retrieve", 0.3), ("llm", 0.7)):
                emit(sess, {
                    "type": "span", "trace_id": trace, "span_id": uuid.UUID(int=rng.getrandbits(128)).hex[:16],
                    "parent_span_id": None, "component": "rag" if name == "retrieve" else "llm", "name": name,
                    "start": start_ts.isoformat().replace("+00:00", "Z"),
                    "end": (start_ts + timedelta(milliseconds=latency * frac)).isoformat().replace("+00:00", "Z"),
                    "status": "ok",
                }, 0.01)  # fmt: skip
        if rng.random() < 0.35:
            emit(
                sess,
                {
                    "type": "edit",
                    "generation_id": gid,
                    "edited_output": user_edit(output, rng, rng.randint(0, 6)),
                },
                rng.uniform(5, 60),
            )
        if rng.random() < 0.5:
            up = rng.random() < MODELS[sess["model"]]
            body: dict[str, Any] = {
                "type": "feedback",
                "generation_id": gid,
                "thumbs": "up" if up else "down",
            }
            if rng.random() < 0.3:
                body["score"] = round(rng.uniform(0.6, 1.0) if up else rng.uniform(0.0, 0.5), 2)
            if not up and rng.random() < 0.3:
                body["comment"] = "not what I asked"
            emit(sess, body, rng.uniform(1, 30))
        if rng.random() < (0.25 if sess["model"] == "llama-3.1-8b" else 0.08):
            emit(sess, {"type": "regenerate", "generation_id": gid, "ui": "button"}, rng.uniform(1, 10))
        elif rng.random() < 0.05:  # a refresh: the user reloads and asks the same thing again
            emit(sess, {
                **generation, "generation_id": f"gen-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
                "input": f"  {generation['input'].lower()}", "trace_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            }, rng.uniform(2, 30))  # fmt: skip
    out = out[:n_events]
    out.sort(key=lambda e: e["ts"])  # stable: a session's own order is kept
    traffic = SampleTraffic(events=out)
    for i in range(n_malformed):
        traffic.malformed.append(_malformed(rng, i, rng.choice(out)))
    return traffic
