"""The alert rules file: who to notify, and when a metric's windows make an alert; every error names its field.

Rules run per group (``app`` + ``group_by``) on multiples of the base window; :mod:`metrics.alert_state` runs
the lifecycle. ``rule.version`` hashes what a rule evaluates: an edit starts new incidents, a new receiver doesn't.

Example (the whole format; defaults in the comments)::

    >>> rules = parse_rules('''
    ... [[receivers]]
    ... name = "ops"                          # required, unique
    ... url = "https://hooks.example.com/x"   # http:// or https://, with a host
    ... secret = "s3cret"                     # optional: HMAC-SHA256 signing key
    ... timeout_s = 5.0                       # default 5
    ... max_attempts = 6                      # default 6
    ... [[rules]]
    ... name = "thumbs-up-drop"               # required, unique, [A-Za-z0-9_.-]+
    ... kind = "threshold"                    # default "threshold"; or "drift", "guardrail"
    ... metric = "thumbs_up"                  # required
    ... aggregation = "mean"                  # default; rate p50 p95 p99 count sum min max
    ... window = "5m"                         # a multiple of the base window; default the base window
    ... filters = { app = "chat" }            # equality on app route model prompt_version index_version component
    ... group_by = ["route"]                  # some of those labels; app is always added
    ... comparator = "<"                      # required: < <= > >=
    ... threshold = 0.4                       # required
    ... resolve_threshold = 0.5               # default threshold; must lie on the good side of it
    ... min_samples = 20                      # default 1: smaller windows neither breach nor clear
    ... for = 2                               # consecutive breaching evaluations before firing; default 1
    ... clear_for = 1                         # consecutive clear evaluations before resolving; default 1
    ... severity = "critical"                 # info warning critical; default warning
    ... cooldown = "10m"                      # no new firing this long after a resolution; default 0
    ... description = "Fewer thumbs up"
    ... receivers = ["ops"]                   # default every receiver
    ... [[rules]]
    ... name = "answer-latency-drift"
    ... kind = "drift"
    ... metric = "latency_ms"                 # required
    ... window = "10m"                        # the current period
    ... reference = "1h"                      # required: the trailing period before the current one, or
    ... # reference = { start = "2026-11-30T00:00:00Z", end = "2026-11-30T06:00:00Z" }
    ... every = "5m"                          # evaluation schedule; default the window
    ... threshold = 0.2                       # PSI; default metrics.drift.PSI_THRESHOLD
    ... alpha = 0.01                          # default metrics.drift.DEFAULT_ALPHA
    ... min_samples = 30                      # default metrics.drift.DEFAULT_MIN_N, on each side
    ... [[rules]]
    ... name = "pii-on-answer"
    ... kind = "guardrail"                    # fires on the first window with a value > 0; no window, no for
    ... metrics = ["guardrail_flag", "pii_output"]   # the default
    ... filters = { route = "answer" }        # group_by defaults to ["route"], severity to "critical"
    ... ''')
    >>> [(r.name, r.kind, r.window_s, r.group_by) for r in rules.rules]  # doctest: +NORMALIZE_WHITESPACE
    [('thumbs-up-drop', 'threshold', 300, ('app', 'route')), ('answer-latency-drift', 'drift', 600, ('app',)),
     ('pii-on-answer', 'guardrail', 60, ('app', 'route'))]
    >>> drop = rules.rules[0]
    >>> drop.breach(0.3), drop.clear(0.3), drop.breach(0.45), drop.clear(0.45), drop.clear(0.6)  # 0.4-0.5: neither
    (True, False, False, False, True)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import operator
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from metrics.drift import DEFAULT_ALPHA, DEFAULT_MIN_N, PSI_THRESHOLD
from metrics.windows import AGGREGATIONS, parse_duration

LABELS = ("app", "route", "model", "prompt_version", "index_version", "component")
COMPARATORS = ("<", "<=", ">", ">=")
SEVERITIES = ("info", "warning", "critical")
GUARDRAIL_METRICS = ("guardrail_flag", "pii_output")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_METRIC = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")  # as metrics.analysis
_COMMON = {"name", "kind", "filters", "group_by", "clear_for", "severity", "cooldown", "description", "receivers"}
_WINDOWED = _COMMON | {"metric", "window", "threshold", "min_samples", "for"}
_FIELDS = {
    "threshold": _WINDOWED | {"aggregation", "comparator", "resolve_threshold"},
    "drift": _WINDOWED | {"reference", "every", "alpha"},
    "guardrail": _COMMON | {"metrics"},
}
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_REQUIRED = object()


class RulesError(ValueError):
    """The alert rules are invalid; the message starts with the field's path, e.g. ``rules[2].threshold:``."""


@dataclass(frozen=True, slots=True)
class Receiver:
    name: str
    url: str
    secret: str | None = field(default=None, repr=False)  # a signing key stays out of logs
    timeout_s: float = 5.0
    max_attempts: int = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rule:
    """What every kind shares: identity, scope, lifecycle settings and routing."""

    kind: ClassVar[str]
    name: str
    filters: tuple[tuple[str, str], ...] = ()
    group_by: tuple[str, ...] = ("app",)
    window_s: int = 60
    for_: int = 1
    clear_for: int = 1
    severity: str = "warning"
    cooldown_s: int = 0
    description: str = ""
    receivers: tuple[str, ...] = ()  # empty: every receiver

    @property
    def version(self) -> str:
        """A short hash of what the rule evaluates (not its severity, description or receivers)."""
        definition = {k: v for k, v in asdict(self).items() if k not in ("severity", "description", "receivers")}
        return hashlib.sha256(json.dumps([self.kind, definition], sort_keys=True).encode()).hexdigest()[:12]

    def _metric_matches(self, metric: str | None) -> bool:
        raise NotImplementedError

    def matches(self, labels: Mapping[str, str | None]) -> bool:
        """Whether a value with these labels (``metric`` among them) belongs to this rule."""
        return self._metric_matches(labels.get("metric")) and all(labels.get(k) == v for k, v in self.filters)

    def group_of(self, labels: Mapping[str, str | None]) -> tuple[tuple[str, str | None], ...]:
        """The group key of a value: its ``group_by`` labels (``app`` included), sorted by label name."""
        return tuple(sorted((k, labels.get(k)) for k in {"app", *self.group_by}))


@dataclass(frozen=True, slots=True, kw_only=True)
class _MetricRule(_Rule):
    metric: str

    def _metric_matches(self, metric: str | None) -> bool:
        return metric == self.metric


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdRule(_MetricRule):
    kind: ClassVar[str] = "threshold"
    comparator: str
    threshold: float
    aggregation: str = "mean"
    resolve_threshold: float | None = None  # None: the threshold itself
    min_samples: int = 1

    def breach(self, value: float) -> bool:
        return bool(_OPS[self.comparator](value, self.threshold))

    def clear(self, value: float) -> bool:
        """On the good side of the resolve threshold (hysteresis: between the two is neither breach nor clear)."""
        bound = self.threshold if self.resolve_threshold is None else self.resolve_threshold
        return not _OPS[self.comparator](value, bound) and value == value  # NaN is on no side

    def outcome(self, value: float | None, count: int) -> bool | None:
        """True breach, False clear, None no decision (fewer than ``min_samples`` values, no value, the band)."""
        if value is None or count < self.min_samples:
            return None
        return True if self.breach(value) else False if self.clear(value) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftRule(_MetricRule):
    kind: ClassVar[str] = "drift"
    reference_s: int | None = None  # a trailing period ending where the current one starts ...
    reference_range: tuple[float, float] | None = None  # ... or pinned: (start, end) in epoch seconds
    every_s: int = 60
    threshold: float = PSI_THRESHOLD
    alpha: float = DEFAULT_ALPHA
    min_samples: int = DEFAULT_MIN_N

    def reference_period(self, current_start: float) -> tuple[float, float]:
        """The reference period (start, end) for a current period starting at ``current_start``."""
        if self.reference_range is not None:
            return self.reference_range
        return current_start - (self.reference_s or 0), current_start


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardrailRule(_Rule):
    kind: ClassVar[str] = "guardrail"
    metrics: tuple[str, ...] = GUARDRAIL_METRICS
    group_by: tuple[str, ...] = ("app", "route")
    severity: str = "critical"

    def _metric_matches(self, metric: str | None) -> bool:
        return metric in self.metrics

    def outcome(self, high: float | None, count: int) -> bool | None:
        """True when the window's largest value is > 0, False when it held values and none was; None when empty."""
        return None if high is None or count == 0 else high > 0


Rule = ThresholdRule | DriftRule | GuardrailRule


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    receivers: tuple[Receiver, ...] = ()
    base_window_s: int = 60

    def receivers_for(self, rule: Rule) -> tuple[Receiver, ...]:
        """The receivers a rule notifies: those it names, else all of them."""
        return tuple(r for r in self.receivers if not rule.receivers or r.name in rule.receivers)


class _Table:
    """One table of the file being read: each accessor checks a key and names it (``where.key``) in its error."""

    def __init__(self, data: object, where: str, allowed: set[str] | tuple[str, ...] | None) -> None:
        if not isinstance(data, Mapping):
            raise RulesError(f"{where or 'the rules'}: must be a table, got {data!r}")
        self.data, self.where = data, where
        for key in data:
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                raise self.fail(key, "unknown field" + (f" (did you mean {close[0]}?)" if close else ""))

    def fail(self, key: str, message: str) -> RulesError:
        return RulesError(f"{self.where}.{key}: {message}" if self.where else f"{key}: {message}")

    def get(self, key: str, default: Any = _REQUIRED) -> Any:
        if key not in self.data and default is _REQUIRED:
            raise self.fail(key, "required")
        return self.data.get(key, default)

    def text(self, key: str, default: Any = _REQUIRED, allowed: re.Pattern[str] | tuple[str, ...] | None = None) -> Any:
        """A string; with ``allowed``, one matching that pattern or among those choices."""
        value = self.get(key, default)
        if value is not default:
            if not isinstance(value, str):
                raise self.fail(key, f"must be a string, got {value!r}")
            if isinstance(allowed, re.Pattern) and not allowed.match(value):
                raise self.fail(key, f"must match {allowed.pattern}, got {value!r}")
            if isinstance(allowed, tuple) and value not in allowed:
                raise self.fail(key, f"must be one of {', '.join(allowed) or '(none defined)'}, got {value!r}")
        return value

    def number(self, key: str, default: Any = _REQUIRED, low: float = -math.inf, high: float = math.inf) -> Any:
        value = self.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"must be a number, got {value!r}")
        if not low < value < high:
            raise self.fail(key, f"must be a number in ({low:g}, {high:g}), got {value!r}")
        return float(value)

    def integer(self, key: str, default: int, low: int = 1) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(key, f"must be an integer >= {low}, got {value!r}")
        return value

    def duration(self, key: str, default: int, base_s: int | None = None, zero: bool = False) -> int:
        value = self.get(key, default)
        if zero and value is not False and value in (0, "0", "0s", "0m", "0h", "0d"):
            return 0
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise self.fail(key, str(e)) from None
        if base_s is not None and seconds % base_s:
            raise self.fail(key, f"{seconds}s is not a multiple of the base window ({base_s}s)")
        return seconds

    def names(self, key: str, default: tuple[str, ...], allowed: re.Pattern[str] | tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(key, default)
        if value is default:
            return default
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of strings, got {value!r}")
        items = _Table({f"{key}[{i}]": v for i, v in enumerate(value)}, self.where, None)
        names = tuple(items.text(k, allowed=allowed) for k in items.data)
        if len(set(names)) != len(names):
            raise self.fail(key, f"has duplicates: {value!r}")
        return names


def _receiver(data: object, where: str) -> Receiver:
    t = _Table(data, where, {"name", "url", "secret", "timeout_s", "max_attempts"})
    name, url, secret = t.text("name", allowed=_NAME), t.text("url"), t.text("secret", None)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or any(c.isspace() or ord(c) < 32 for c in url):
        raise t.fail("url", f"must be http:// or https:// (no spaces or control characters), got {url!r}")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError as e:  # a port that is not a number, or out of range
        raise t.fail("url", f"{e}, got {url!r}") from None
    if not host:
        raise t.fail("url", f"must have a host, got {url!r}")
    if secret == "":
        raise t.fail("secret", "must not be empty (leave it out to send unsigned)")
    return Receiver(name, url, secret, t.number("timeout_s", 5.0, 0.0, 600.0), t.integer("max_attempts", 6))


def _timestamp(t: _Table, key: str) -> float:
    given = t.get(key)
    try:  # a TOML datetime comes parsed; Python >= 3.11 reads a trailing Z as UTC
        value = given if isinstance(given, datetime) else datetime.fromisoformat(given)
    except (TypeError, ValueError):
        raise t.fail(key, f"must be an ISO 8601 timestamp, got {given!r}") from None
    if value.utcoffset() is None:
        raise t.fail(key, f"must carry a zone (e.g. a trailing Z), got {given!r}")
    return value.astimezone(UTC).timestamp()


def _reference(t: _Table, base_s: int) -> dict[str, Any]:
    if not isinstance(value := t.get("reference"), Mapping):
        return {"reference_s": t.duration("reference", 0, base_s)}
    pinned = _Table(value, f"{t.where}.reference", {"start", "end"})
    start, end = _timestamp(pinned, "start"), _timestamp(pinned, "end")
    if not start < end:
        raise pinned.fail("end", f"must be after start, got {pinned.data['end']!r}")
    return {"reference_range": (start, end)}


def _rule(data: object, where: str, base_s: int, receivers: tuple[str, ...]) -> Rule:
    kind = data.get("kind", "threshold") if isinstance(data, Mapping) else "threshold"
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise RulesError(f"{where}.kind: must be one of {', '.join(_FIELDS)}, got {kind!r}")
    t = _Table(data, where, _FIELDS[kind])
    filters = _Table(t.get("filters", {}), f"{where}.filters", LABELS)
    group_by = t.names("group_by", ("route",) if kind == "guardrail" else (), LABELS)
    common: dict[str, Any] = {
        "name": t.text("name", allowed=_NAME),
        "filters": tuple(sorted((label, filters.text(label)) for label in filters.data)),
        "group_by": tuple(sorted({"app", *group_by})),
        "clear_for": t.integer("clear_for", 1),
        "severity": t.text("severity", "critical" if kind == "guardrail" else "warning", SEVERITIES),
        "cooldown_s": t.duration("cooldown", 0, zero=True),
        "description": t.text("description", ""),
        "receivers": t.names("receivers", (), receivers),
    }
    if kind == "guardrail":
        if not (metrics := t.names("metrics", GUARDRAIL_METRICS, _METRIC)):
            raise t.fail("metrics", "must name at least one metric")
        return GuardrailRule(**common, window_s=base_s, metrics=metrics)
    common |= {
        "metric": t.text("metric", allowed=_METRIC),
        "window_s": t.duration("window", base_s, base_s),
        "for_": t.integer("for", 1),
    }
    if kind == "drift":
        return DriftRule(
            **common,
            **_reference(t, base_s),
            every_s=t.duration("every", common["window_s"], base_s),
            threshold=t.number("threshold", PSI_THRESHOLD, 0.0),
            alpha=t.number("alpha", DEFAULT_ALPHA, 0.0, 0.5),
            min_samples=t.integer("min_samples", DEFAULT_MIN_N),
        )
    comparator, threshold = t.text("comparator", allowed=COMPARATORS), t.number("threshold")
    resolve, below = t.number("resolve_threshold", None), comparator in ("<", "<=")
    if resolve is not None and (resolve < threshold if below else resolve > threshold):
        side = ">=" if below else "<="
        raise t.fail("resolve_threshold", f"must be {side} threshold ({threshold:g}) for comparator {comparator!r}")
    common |= {"aggregation": t.text("aggregation", "mean", AGGREGATIONS), "min_samples": t.integer("min_samples", 1)}
    return ThresholdRule(**common, comparator=comparator, threshold=threshold, resolve_threshold=resolve)


def _array(data: Mapping[str, Any], key: str) -> list[Any]:
    if not isinstance(value := data.get(key, []), list):
        raise RulesError(f"{key}: must be an array of tables ([[{key}]])")
    return value


def rules_from_mapping(data: Mapping[str, Any], base_window_s: int = 60) -> RuleSet:
    """The rules of an already parsed file (a mapping with ``receivers`` and ``rules`` arrays), checked."""
    if isinstance(base_window_s, bool) or not isinstance(base_window_s, int) or base_window_s <= 0:
        raise ValueError(f"base_window_s must be a positive integer, got {base_window_s!r}")
    _Table(data, "", {"receivers", "rules"})
    receivers = [_receiver(r, f"receivers[{i}]") for i, r in enumerate(_array(data, "receivers"))]
    known = tuple(r.name for r in receivers)
    rules = [_rule(r, f"rules[{i}]", base_window_s, known) for i, r in enumerate(_array(data, "rules"))]
    for what, items in (("receivers", receivers), ("rules", rules)):
        names = [item.name for item in items]
        for i in (i for i, name in enumerate(names) if name in names[:i]):
            raise RulesError(f"{what}[{i}].name: duplicate name {names[i]!r}")
    return RuleSet(tuple(rules), tuple(receivers), base_window_s)


def parse_rules(text: str, base_window_s: int = 60) -> RuleSet:
    """The rules of a TOML file's text, checked (see the module's docstring for the format)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RulesError(f"invalid TOML: {e}") from None
    return rules_from_mapping(data, base_window_s)
