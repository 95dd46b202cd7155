"""LLM-as-judge definitions from the evaluation config, and reading a judge's answer. Plain data, stdlib only.

In the evaluation config (``EVALSTREAM_EVAL_CONFIG``)::

    [judges.helpful]
    template = \"\"\"Rate how helpful the answer is, from 0 to 1.
    Question: {input}
    Answer: {output}
    Reply as JSON: {{"score": <0..1>, "reason": "<one sentence>"}}\"\"\"
    sampling = 0.1                 # share of generations judged (by a hash of generation_id), default 1
    apps = ["support-bot"]         # default: every app; routes = [...] likewise
    requests_per_minute = 60       # default 60
    tokens_per_day = 2_000_000     # default 1,000,000 (prompt + completion, counted from the provider's usage)
    threshold = 0.5                # score >= this is "good" when compared with the users (default 0.5)
    # labels = {good = 1.0, bad = 0.0}   # instead of a number, the answer's label maps to a score
    # model = "gpt-4o-mini"              # default EVALSTREAM_JUDGE_MODEL

Placeholders are ``{input}``, ``{output}`` and ``{context}`` (the retrieved passages, one per line); ``{{`` and
``}}`` are literal braces. A judge's ``version`` is a hash of everything that changes its answers (template, model,
labels): change the template and it is a new judge version, judged and cached anew.

Example::

    >>> judges = parse_judges({"judges": {"helpful": {"template": "Q: {input} A: {output}", "sampling": 0.5}}})
    >>> j = judges[0]
    >>> j.name, j.sampling, j.render("hi", "hello", None), len(j.version)
    ('helpful', 0.5, 'Q: hi A: hello', 12)
    >>> parse_answer('{"score": 0.8, "reason": "clear"}', None)
    (0.8, None, 'clear')
    >>> parse_judges({"judges": {"x": {"template": "{question}"}}})
    Traceback (most recent call last):
    ...
    metrics.judges.JudgeConfigError: judges.x.template: unknown placeholder {question} (known: input, output, context)
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDERS = ("input", "output", "context")
_NAME = re.compile(r"^[a-z0-9_]{1,64}$")


class JudgeConfigError(ValueError):
    """A judge's definition is invalid; the message names the field."""


@dataclass(frozen=True)
class Judge:
    name: str
    template: str
    sampling: float = 1.0
    apps: tuple[str, ...] = ()  # empty: every app
    routes: tuple[str, ...] = ()
    requests_per_minute: float = 60.0
    tokens_per_day: int = 1_000_000
    threshold: float = 0.5
    labels: Mapping[str, float] = field(default_factory=dict)  # label -> score, instead of a number
    model: str | None = None

    @property
    def version(self) -> str:
        """A hash of what changes the judge's answers (not its sampling or budget)."""
        key = json.dumps([self.template, self.model, sorted(self.labels.items())], ensure_ascii=False)
        return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()

    def applies_to(self, app: str, route: str) -> bool:
        return (not self.apps or app in self.apps) and (not self.routes or route in self.routes)

    def sampled(self, generation_id: str) -> bool:
        """Whether this generation is judged: a hash of its id (and the judge's name) below the sampling rate, so a
        replay judges the same generations."""
        digest = hashlib.blake2b(f"{self.name}:{generation_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.sampling

    def render(self, input: str, output: str, context: Sequence[str] | None) -> str:
        return self.template.format(input=input, output=output, context="\n".join(context or ()))


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _number(value: Any, where: str, low: float, high: float, integer: bool = False) -> float:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise JudgeConfigError(f"{where}: must be {what} in [{low:g}, {high:g}], got {value!r}")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise JudgeConfigError(f"{where}: must be a list of names, got {value!r}")
    return tuple(value)


_KEYS = ("template", "sampling", "apps", "routes", "requests_per_minute", "tokens_per_day", "threshold", "labels",
         "model")  # fmt: skip


def parse_judge(name: str, spec: Any) -> Judge:
    where = f"judges.{name}"
    if not _NAME.match(name):
        raise JudgeConfigError(f"{where}: a judge's name is [a-z0-9_]{{1,64}}")
    if not isinstance(spec, Mapping):
        raise JudgeConfigError(f"{where}: must be a table")
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise JudgeConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(_KEYS)})")
    template = spec.get("template")
    if not isinstance(template, str) or not template.strip():
        raise JudgeConfigError(f"{where}.template: must be a non-empty string")
    try:
        used = _placeholders(template)
    except ValueError as exc:
        raise JudgeConfigError(f"{where}.template: {exc} (write {{{{ and }}}} for literal braces)") from None
    for placeholder in sorted(used):
        if placeholder not in PLACEHOLDERS:
            raise JudgeConfigError(
                f"{where}.template: unknown placeholder {{{placeholder}}} (known: {', '.join(PLACEHOLDERS)})"
            )
    labels = spec.get("labels", {})
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
        for k, v in labels.items()
    ):
        raise JudgeConfigError(f"{where}.labels: must map labels to scores in [0, 1], got {labels!r}")
    model = spec.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise JudgeConfigError(f"{where}.model: must be a model name, got {model!r}")
    return Judge(
        name, template,
        sampling=float(_number(spec.get("sampling", 1.0), f"{where}.sampling", 0.0, 1.0)),
        apps=_names(spec.get("apps", []), f"{where}.apps"), routes=_names(spec.get("routes", []), f"{where}.routes"),
        requests_per_minute=float(_number(spec.get("requests_per_minute", 60), f"{where}.requests_per_minute", 0.01,
                                          100_000)),
        tokens_per_day=int(_number(spec.get("tokens_per_day", 1_000_000), f"{where}.tokens_per_day", 1, 10**12,
                                   integer=True)),
        threshold=float(_number(spec.get("threshold", 0.5), f"{where}.threshold", 0.0, 1.0)),
        labels={str(k): float(v) for k, v in labels.items()}, model=model,
    )  # fmt: skip


def parse_judges(config: Mapping[str, Any]) -> list[Judge]:
    """The ``[judges.<name>]`` tables of a parsed config (none: no judges, the default)."""
    judges = config.get("judges") or {}
    if not isinstance(judges, Mapping):
        raise JudgeConfigError("judges: must be a table of judges")
    return [parse_judge(name, spec) for name, spec in sorted(judges.items())]


_SCORE = re.compile(r"(?i)\bscore\b\W{0,3}([01](?:\.\d+)?|\.\d+)")


def parse_answer(text: str, labels: Mapping[str, float] | None) -> tuple[float | None, str | None, str | None]:
    """``(score, label, reason)`` from a judge's reply: a JSON object (``score`` or ``label``, ``reason``; also
    inside a code fence or surrounding prose), else a ``score: 0.7`` / ``label: good`` line. The score is None
    when the reply holds none in [0, 1] (or an unknown label): the caller stores the raw text and counts it.

    >>> reply = 'Sure! ```json {"label": "Good", "reason": "ok"} ```'
    >>> parse_answer(reply, {"good": 1.0, "bad": 0.0})
    (1.0, 'good', 'ok')
    >>> parse_answer("Score: 0.25 because it rambles", None)
    (0.25, None, None)
    >>> parse_answer("I cannot rate this.", None)
    (None, None, None)
    """
    data: Any = None
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            data = json.loads(text[start : end + 1])
        except ValueError:
            data = None
    reason = str(data["reason"]) if isinstance(data, dict) and data.get("reason") is not None else None
    if labels:
        label = data.get("label") if isinstance(data, dict) else None
        if label is None:
            match = re.search(r"(?i)\blabel\b\W{0,3}([A-Za-z_\-]+)", text)
            label = match[1] if match else None
        if isinstance(label, str) and label.strip().lower() in {k.lower(): v for k, v in labels.items()}:
            key = next(k for k in labels if k.lower() == label.strip().lower())
            return labels[key], key, reason
        return None, None, reason
    score = data.get("score") if isinstance(data, dict) else None
    if score is None:
        match = _SCORE.search(text)
        score = float(match[1]) if match else None
    if isinstance(score, str):
        try:
            score = float(score)
        except ValueError:
            score = None
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        return None, None, reason
    return float(score), None, reason
