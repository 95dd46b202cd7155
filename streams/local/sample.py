"""Synthetic but realistic LLM traffic for the demo and the tests (deterministic for a seed).

Sessions of a support bot and a docs assistant: generations from three models and two prompt versions, then
thumbs up/down (one model is rated worse), user edits (a few words inserted, deleted or rewritten),
regenerates, refreshes (the same question asked again) and trace spans; optionally malformed messages of every
kind the worker must dead-letter.

Example::

    >>> traffic = generate(n_events=50, n_malformed=3, seed=1)
    >>> len(traffic.events), len(traffic.malformed)
    (50, 3)
    >>> sorted({e["type"] for e in traffic.events})
    ['edit', 'feedback', 'generation', 'regenerate', 'span']
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
INDEX_VERSIONS = ["kb-2026-11-01", "kb-2026-11-28"]  # the docs assistant's retrieval index

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


def retrieve(question: str, rng: random.Random, k: int = 3) -> list[Any]:
    """What a retriever might return for ``question``: the sentences that share the most words with it (ties
    broken at random), some with a source.

    >>> passages = retrieve("How do I reset my password?", random.Random(1))
    >>> [(p if isinstance(p, str) else p["text"])[:24] for p in passages]
    ['You can reset your passw', 'A reset link will be sen', 'Here is an example: `for']
    """
    words = set(question.lower().replace("?", "").split())
    ranked = sorted(
        range(len(SENTENCES)), key=lambda i: (-len(words & set(SENTENCES[i].lower().split())), rng.random())
    )
    return [{"text": SENTENCES[i], "source": f"kb://articles/{i}"} if rng.random() < 0.7 else SENTENCES[i]
            for i in ranked[:k]]  # fmt: skip


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
            "region": rng.choice(["eu-west", "us-east"]),
            "deployment": rng.choice(["blue", "green"]),
            "index_version": rng.choice(INDEX_VERSIONS),
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
        retrieval = sess["app"] == "docs-assistant"  # the docs assistant answers from retrieved passages
        generation = {
            "type": "generation", "generation_id": gid, "route": rng.choice(APPS[sess["app"]]),
            "model": sess["model"], "prompt_version": sess["prompt_version"],
            "input": question, "output": "" if failed else output,
            "latency_ms": round(latency, 1), "tokens_in": tokens_in, "tokens_out": tokens_out,
            "cost_usd": round((tokens_in * 0.15 + tokens_out * 0.6) / 1e6, 8),
            **({"error": "upstream timeout"} if failed else {}), "trace_id": trace,
            "tags": {"region": sess["region"], "deployment": sess["deployment"]},
            **({"index_version": sess["index_version"], "context": retrieve(question, rng)} if retrieval else {}),
        }  # fmt: skip
        step = rng.uniform(5, 120)
        if retrieval or rng.random() < 0.3:
            # the trace's spans: a retriever (docs assistant) or a router, then the model call; a tracer sends
            # each span when it ends, mostly before the generation event, sometimes after
            root = uuid.UUID(int=rng.getrandbits(128)).hex[:16]
            span_start = sess["t"] + timedelta(seconds=step) - timedelta(milliseconds=latency)
            first = "retriever" if retrieval else "router"
            steps = ((first, 0.3, root, None), ("llm", 0.7, uuid.UUID(int=rng.getrandbits(128)).hex[:16], root))
            late = rng.random() < 0.3
            for component, frac, span_id, parent in steps:
                span_end = span_start + timedelta(milliseconds=latency * frac)
                out.append({
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "ts": (span_end + timedelta(seconds=1 if late else 0)).isoformat().replace("+00:00", "Z"),
                    "session_id": sess["session_id"], "app": sess["app"], "type": "span", "trace_id": trace,
                    "span_id": span_id, "parent_span_id": parent, "component": component,
                    "name": f"{component}.call", "start": span_start.isoformat().replace("+00:00", "Z"),
                    "end": span_end.isoformat().replace("+00:00", "Z"),
                    "status": "error" if rng.random() < 0.01 else "ok",
                })  # fmt: skip
                span_start = span_end
        emit(sess, generation, step)
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
