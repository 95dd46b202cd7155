"""The alert rules file: the format, its defaults, and an error naming the field for every way it can be wrong."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from metrics.alert_rules import (
    DriftRule,
    GuardrailRule,
    Receiver,
    RulesError,
    RuleSet,
    ThresholdRule,
    parse_rules,
    rules_from_mapping,
)
from metrics.drift import DEFAULT_ALPHA, DEFAULT_MIN_N, PSI_THRESHOLD

FULL = """
[[receivers]]
name = "ops"
url = "https://hooks.example.com/x"
secret = "s3cret"
timeout_s = 2.5
max_attempts = 3

[[receivers]]
name = "pager"
url = "http://pager.internal:8080/hook"

[[rules]]
name = "thumbs-up-drop"
kind = "threshold"
metric = "thumbs_up"
aggregation = "rate"
window = "5m"
filters = { app = "chat", model = "gpt-x" }
group_by = ["route", "prompt_version"]
comparator = "<"
threshold = 0.4
resolve_threshold = 0.5
min_samples = 20
for = 2
clear_for = 3
severity = "critical"
cooldown = "10m"
description = "Fewer thumbs up"
receivers = ["ops"]

[[rules]]
name = "answer-latency-drift"
kind = "drift"
metric = "latency_ms"
window = "10m"
reference = "1h"
every = "5m"
threshold = 0.3
alpha = 0.05
min_samples = 50
filters = { route = "answer" }
group_by = ["model"]
for = 2
clear_for = 2
severity = "info"
cooldown = "1h"
description = "Latency shape changed"
receivers = ["pager", "ops"]

[[rules]]
name = "pii-on-answer"
kind = "guardrail"
metrics = ["pii_output"]
filters = { route = "answer" }
clear_for = 2
cooldown = 300
description = "PII in an answer"
"""


NO_SPACES = "must be http:// or https:// (no spaces or control characters)"


def rule(**fields: Any) -> dict[str, Any]:
    """A valid threshold rule, with ``fields`` on top (None removes a field)."""
    base = {"name": "r", "metric": "m", "comparator": ">", "threshold": 1.0}
    return {k: v for k, v in (base | fields).items() if v is not None}


def drift(**fields: Any) -> dict[str, Any]:
    base = {"name": "d", "kind": "drift", "metric": "m", "reference": "1h"}
    return {k: v for k, v in (base | fields).items() if v is not None}


def receiver(**fields: Any) -> dict[str, Any]:
    base = {"name": "ops", "url": "https://hooks.example.com/x"}
    return {k: v for k, v in (base | fields).items() if v is not None}


def one(data: dict[str, Any], base_window_s: int = 60) -> Any:
    (only,) = rules_from_mapping({"rules": [data]}, base_window_s).rules
    return only


def test_the_full_example_parses_field_by_field() -> None:
    rules = parse_rules(FULL)
    assert rules.base_window_s == 60
    ops, pager = rules.receivers
    assert ops == Receiver("ops", "https://hooks.example.com/x", "s3cret", 2.5, 3)
    assert pager == Receiver("pager", "http://pager.internal:8080/hook", None, 5.0, 6)
    assert "s3cret" not in repr(ops)
    drop, latency, pii = rules.rules
    assert drop == ThresholdRule(
        name="thumbs-up-drop",
        metric="thumbs_up",
        aggregation="rate",
        window_s=300,
        filters=(("app", "chat"), ("model", "gpt-x")),
        group_by=("app", "prompt_version", "route"),
        comparator="<",
        threshold=0.4,
        resolve_threshold=0.5,
        min_samples=20,
        for_=2,
        clear_for=3,
        severity="critical",
        cooldown_s=600,
        description="Fewer thumbs up",
        receivers=("ops",),
    )
    assert latency == DriftRule(
        name="answer-latency-drift",
        metric="latency_ms",
        window_s=600,
        reference_s=3600,
        every_s=300,
        threshold=0.3,
        alpha=0.05,
        min_samples=50,
        filters=(("route", "answer"),),
        group_by=("app", "model"),
        for_=2,
        clear_for=2,
        severity="info",
        cooldown_s=3600,
        description="Latency shape changed",
        receivers=("pager", "ops"),
    )
    assert pii == GuardrailRule(
        name="pii-on-answer",
        metrics=("pii_output",),
        filters=(("route", "answer"),),
        group_by=("app", "route"),
        window_s=60,
        clear_for=2,
        cooldown_s=300,
        description="PII in an answer",
    )
    assert [r.kind for r in rules.rules] == ["threshold", "drift", "guardrail"]
    assert rules.receivers_for(drop) == (ops,) and rules.receivers_for(latency) == (ops, pager)
    assert rules.receivers_for(pii) == (ops, pager)


def test_defaults() -> None:
    rules = rules_from_mapping(
        {
            "receivers": [receiver()],
            "rules": [
                rule(),
                drift(),
                {"name": "g", "kind": "guardrail"},
            ],
        }
    )
    assert rules.receivers == (Receiver("ops", "https://hooks.example.com/x"),)
    threshold, drifting, guard = rules.rules
    assert isinstance(drifting, DriftRule)
    assert threshold == ThresholdRule(name="r", metric="m", comparator=">", threshold=1.0)
    assert (threshold.aggregation, threshold.window_s, threshold.group_by, threshold.filters) == (
        "mean",
        60,
        ("app",),
        (),
    )
    assert (threshold.resolve_threshold, threshold.min_samples, threshold.for_, threshold.clear_for) == (None, 1, 1, 1)
    assert (threshold.severity, threshold.cooldown_s, threshold.description, threshold.receivers) == (
        "warning",
        0,
        "",
        (),
    )
    assert (drifting.window_s, drifting.every_s, drifting.reference_s, drifting.reference_range) == (60, 60, 3600, None)
    assert (drifting.threshold, drifting.alpha, drifting.min_samples) == (PSI_THRESHOLD, DEFAULT_ALPHA, DEFAULT_MIN_N)
    assert guard == GuardrailRule(name="g")
    assert guard.metrics == ("guardrail_flag", "pii_output") and guard.group_by == ("app", "route")
    assert (guard.severity, guard.window_s, guard.for_, guard.clear_for) == ("critical", 60, 1, 1)
    assert rules.receivers_for(threshold) == rules.receivers


def test_drift_every_defaults_to_its_window_and_windows_follow_the_base() -> None:
    assert one(drift(window="10m")).every_s == 600
    assert one(rule(), base_window_s=300).window_s == 300
    assert one(rule(window="15m"), base_window_s=300).window_s == 900
    assert one({"name": "g", "kind": "guardrail"}, base_window_s=30).window_s == 30


def test_an_empty_file_is_an_empty_rule_set() -> None:
    assert parse_rules("") == RuleSet((), (), 60)
    assert parse_rules("", base_window_s=10).base_window_s == 10


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # the file
        ({"rule": []}, "rule: unknown field (did you mean rules?)"),
        ({"rules": {"name": "x"}}, "rules: must be an array of tables ([[rules]])"),
        ({"receivers": "ops"}, "receivers: must be an array of tables ([[receivers]])"),
        ({"rules": ["x"]}, "rules[0]: must be a table, got 'x'"),
        # rules: the common fields
        ({"rules": [rule(), rule(name="s", tresh=1)]}, "rules[1].tresh: unknown field (did you mean threshold?)"),
        ({"rules": [rule(bogus=1)]}, "rules[0].bogus: unknown field"),
        ({"rules": [rule(name=None)]}, "rules[0].name: required"),
        ({"rules": [rule(name="a b")]}, "rules[0].name: must match"),
        ({"rules": [rule(name="")]}, "rules[0].name: must match"),
        ({"rules": [rule(name=3)]}, "rules[0].name: must be a string, got 3"),
        ({"rules": [rule(), rule()]}, "rules[1].name: duplicate name 'r'"),
        ({"rules": [rule(kind="ratio")]}, "rules[0].kind: must be one of threshold, drift, guardrail, got 'ratio'"),
        ({"rules": [rule(kind=["drift"])]}, "rules[0].kind: must be one of"),
        ({"rules": [rule(metric=None)]}, "rules[0].metric: required"),
        ({"rules": [rule(metric="a b")]}, "rules[0].metric: must match"),
        ({"rules": [rule(filters="app=chat")]}, "rules[0].filters: must be a table, got 'app=chat'"),
        ({"rules": [rule(filters={"region": "eu"})]}, "rules[0].filters.region: unknown field"),
        ({"rules": [rule(filters={"app": 3})]}, "rules[0].filters.app: must be a string, got 3"),
        ({"rules": [rule(group_by="route")]}, "rules[0].group_by: must be a list of strings, got 'route'"),
        ({"rules": [rule(group_by=["route", "region"])]}, "rules[0].group_by[1]: must be one of app, route, model"),
        ({"rules": [rule(group_by=["route", 1])]}, "rules[0].group_by[1]: must be a string, got 1"),
        ({"rules": [rule(group_by=["route", "route"])]}, "rules[0].group_by: has duplicates"),
        ({"rules": [rule(window="90s")]}, "rules[0].window: 90s is not a multiple of the base window (60s)"),
        ({"rules": [rule(window=90)]}, "rules[0].window: 90s is not a multiple of the base window (60s)"),
        ({"rules": [rule(window="5 min")]}, "rules[0].window: invalid duration '5 min'"),
        ({"rules": [rule(window="0m")]}, "rules[0].window: invalid duration '0m': must be positive"),
        ({"rules": [rule(window=True)]}, "rules[0].window: invalid duration True"),
        ({"rules": [rule(cooldown="-1m")]}, "rules[0].cooldown: invalid duration '-1m'"),
        ({"rules": [rule(cooldown=False)]}, "rules[0].cooldown: invalid duration False"),
        ({"rules": [rule(severity="page")]}, "rules[0].severity: must be one of info, warning, critical, got 'page'"),
        ({"rules": [rule(description=5)]}, "rules[0].description: must be a string, got 5"),
        ({"rules": [rule(**{"for": 0})]}, "rules[0].for: must be an integer >= 1, got 0"),
        ({"rules": [rule(**{"for": 1.0})]}, "rules[0].for: must be an integer >= 1, got 1.0"),
        ({"rules": [rule(clear_for=True)]}, "rules[0].clear_for: must be an integer >= 1, got True"),
        ({"rules": [rule(min_samples=0)]}, "rules[0].min_samples: must be an integer >= 1, got 0"),
        # threshold rules
        ({"rules": [rule(), rule(name="b"), rule(name="c", threshold="x")]}, "rules[2].threshold: must be a number"),
        ({"rules": [rule(threshold=None)]}, "rules[0].threshold: required"),
        ({"rules": [rule(threshold=True)]}, "rules[0].threshold: must be a number, got True"),
        ({"rules": [rule(threshold=float("nan"))]}, "rules[0].threshold: must be a number, got nan"),
        ({"rules": [rule(threshold=float("inf"))]}, "rules[0].threshold: must be a number, got inf"),
        ({"rules": [rule(comparator=None)]}, "rules[0].comparator: required"),
        ({"rules": [rule(comparator="==")]}, "rules[0].comparator: must be one of <, <=, >, >=, got '=='"),
        ({"rules": [rule(aggregation="median")]}, "rules[0].aggregation: must be one of mean, rate, p50"),
        (
            {"rules": [rule(comparator="<", threshold=0.4, resolve_threshold=0.3)]},
            "rules[0].resolve_threshold: must be >=",
        ),
        (
            {"rules": [rule(comparator="<=", threshold=0.4, resolve_threshold=0.3)]},
            "rules[0].resolve_threshold: must be >= threshold (0.4) for comparator '<='",
        ),
        (
            {"rules": [rule(comparator=">", threshold=800, resolve_threshold=900)]},
            "rules[0].resolve_threshold: must be <= threshold (800) for comparator '>'",
        ),
        (
            {"rules": [rule(comparator=">=", threshold=800, resolve_threshold=801)]},
            "rules[0].resolve_threshold: must be <= threshold (800) for comparator '>='",
        ),
        ({"rules": [rule(resolve_threshold="high")]}, "rules[0].resolve_threshold: must be a number, got 'high'"),
        ({"rules": [rule(reference="1h")]}, "rules[0].reference: unknown field"),
        ({"rules": [rule(metrics=["m"])]}, "rules[0].metrics: unknown field (did you mean metric?)"),
        # drift rules
        ({"rules": [drift(reference=None)]}, "rules[0].reference: required"),
        ({"rules": [drift(reference="90s")]}, "rules[0].reference: 90s is not a multiple of the base window (60s)"),
        ({"rules": [drift(reference=[1, 2])]}, "rules[0].reference: invalid duration [1, 2]"),
        ({"rules": [drift(every="30s")]}, "rules[0].every: 30s is not a multiple of the base window (60s)"),
        ({"rules": [drift(threshold=0)]}, "rules[0].threshold: must be a number in (0, inf), got 0"),
        ({"rules": [drift(alpha=0.5)]}, "rules[0].alpha: must be a number in (0, 0.5), got 0.5"),
        ({"rules": [drift(alpha=0)]}, "rules[0].alpha: must be a number in (0, 0.5), got 0"),
        ({"rules": [drift(comparator="<")]}, "rules[0].comparator: unknown field"),
        ({"rules": [drift(aggregation="mean")]}, "rules[0].aggregation: unknown field"),
        ({"rules": [drift(reference={"start": "2026-11-30T00:00:00Z"})]}, "rules[0].reference.end: required"),
        ({"rules": [drift(reference={"end": "2026-11-30T00:00:00Z"})]}, "rules[0].reference.start: required"),
        (
            {"rules": [drift(reference={"start": "2026-11-30T00:00:00", "end": "2026-11-30T06:00:00Z"})]},
            "rules[0].reference.start: must carry a zone (e.g. a trailing Z), got '2026-11-30T00:00:00'",
        ),
        (
            {"rules": [drift(reference={"start": "2026-11-30T00:00:00Z", "end": "yesterday"})]},
            "rules[0].reference.end: must be an ISO 8601 timestamp, got 'yesterday'",
        ),
        (
            {"rules": [drift(reference={"start": "2026-11-30T06:00:00Z", "end": "2026-11-30T06:00:00Z"})]},
            "rules[0].reference.end: must be after start",
        ),
        (
            {"rules": [drift(reference={"start": "2026-11-30T06:00:00Z", "end": "2026-11-30T07:00:00+02:00"})]},
            "rules[0].reference.end: must be after start",
        ),
        ({"rules": [drift(reference={"from": "x", "start": "y"})]}, "rules[0].reference.from: unknown field"),
        ({"rules": [drift(reference={"start": 5, "end": 6})]}, "rules[0].reference.start: must be an ISO 8601"),
        # guardrail rules
        ({"rules": [{"name": "g", "kind": "guardrail", "window": "5m"}]}, "rules[0].window: unknown field"),
        ({"rules": [{"name": "g", "kind": "guardrail", "for": 2}]}, "rules[0].for: unknown field"),
        ({"rules": [{"name": "g", "kind": "guardrail", "metric": "x"}]}, "rules[0].metric: unknown field"),
        ({"rules": [{"name": "g", "kind": "guardrail", "metrics": []}]}, "rules[0].metrics: must name at least one"),
        ({"rules": [{"name": "g", "kind": "guardrail", "metrics": "pii"}]}, "rules[0].metrics: must be a list"),
        ({"rules": [{"name": "g", "kind": "guardrail", "metrics": ["a", "a"]}]}, "rules[0].metrics: has duplicates"),
        ({"rules": [{"name": "g", "kind": "guardrail", "metrics": ["a b"]}]}, "rules[0].metrics[0]: must match"),
        ({"rules": [{"kind": "guardrail"}]}, "rules[0].name: required"),
        # receivers
        ({"receivers": [receiver(), receiver()]}, "receivers[1].name: duplicate name 'ops'"),
        ({"receivers": [receiver(name=None)]}, "receivers[0].name: required"),
        ({"receivers": [receiver(url=None)]}, "receivers[0].url: required"),
        ({"receivers": [receiver(uri="x")]}, "receivers[0].uri: unknown field (did you mean url?)"),
        ({"receivers": [receiver(), receiver(name="b", url="ftp://x.org/f")]}, "receivers[1].url: must be http://"),
        ({"receivers": [receiver(url="file:///etc/passwd")]}, "receivers[0].url: must be http:// or https://"),
        ({"receivers": [receiver(url="javascript:alert(1)")]}, "receivers[0].url: must be http:// or https://"),
        ({"receivers": [receiver(url="hooks.example.com/x")]}, "receivers[0].url: must be http:// or https://"),
        ({"receivers": [receiver(url="https:///x")]}, "receivers[0].url: must have a host, got 'https:///x'"),
        ({"receivers": [receiver(url="http:x")]}, "receivers[0].url: must have a host"),
        ({"receivers": [receiver(url="https://")]}, "receivers[0].url: must have a host"),
        ({"receivers": [receiver(url=" https://a.example/x")]}, "receivers[0].url: must be http:// or https://"),
        ({"receivers": [receiver(url="https://a.example/x y")]}, f"receivers[0].url: {NO_SPACES}"),
        ({"receivers": [receiver(url="https://a.example/\n")]}, f"receivers[0].url: {NO_SPACES}"),
        ({"receivers": [receiver(url="https://a.example:99999/x")]}, "receivers[0].url: Port out of range"),
        ({"receivers": [receiver(url="https://a.example:port/x")]}, "receivers[0].url:"),
        ({"receivers": [receiver(url=5)]}, "receivers[0].url: must be a string, got 5"),
        ({"receivers": [receiver(secret="")]}, "receivers[0].secret: must not be empty"),
        ({"receivers": [receiver(secret=5)]}, "receivers[0].secret: must be a string, got 5"),
        ({"receivers": [receiver(timeout_s=0)]}, "receivers[0].timeout_s: must be a number in (0, 600), got 0"),
        ({"receivers": [receiver(timeout_s="5s")]}, "receivers[0].timeout_s: must be a number, got '5s'"),
        ({"receivers": [receiver(max_attempts=0)]}, "receivers[0].max_attempts: must be an integer >= 1, got 0"),
        ({"receivers": ["ops"]}, "receivers[0]: must be a table, got 'ops'"),
        ({"rules": [rule(receivers=["ops"])]}, "rules[0].receivers[0]: must be one of (none defined), got 'ops'"),
        (
            {"receivers": [receiver()], "rules": [rule(), rule(name="b", receivers=["ops", "pager"])]},
            "rules[1].receivers[1]: must be one of ops, got 'pager'",
        ),
        ({"receivers": [receiver()], "rules": [rule(receivers="ops")]}, "rules[0].receivers: must be a list"),
        ({"receivers": [receiver()], "rules": [rule(receivers=["ops", "ops"])]}, "rules[0].receivers: has duplicates"),
    ],
)
def test_every_error_names_its_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(RulesError, match="^" + re.escape(message)):
        rules_from_mapping(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[rules]]\nname = 'x'\nmetric = 'm'\ncomparator = '<'\nthreshold = 'low'",
            "rules[0].threshold: must be a number",
        ),
        ("[[rules]\nname = 'x'", "invalid TOML: "),
        ("title = 'alerts'", "title: unknown field"),
        ("[rules]\nname = 'x'", "rules: must be an array of tables ([[rules]])"),
        (FULL.replace('window = "5m"', 'window = "90s"'), "rules[0].window: 90s is not a multiple"),
        (FULL.replace('receivers = ["ops"]', 'receivers = ["nobody"]'), "rules[0].receivers[0]: must be one of"),
        (FULL.replace("https://hooks.example.com/x", "ftp://hooks.example.com/x"), "receivers[0].url: must be http://"),
        (FULL.replace("tresh", "x").replace("threshold = 0.4", "tresh = 0.4"), "rules[0].tresh: unknown field"),
    ],
)
def test_toml_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(RulesError, match="^" + re.escape(message)):
        parse_rules(text)


def test_rules_error_is_a_value_error_and_the_base_window_is_checked() -> None:
    assert issubclass(RulesError, ValueError)
    for bad in (0, -60, True, 1.5):
        with pytest.raises(ValueError, match="base_window_s must be a positive integer"):
            rules_from_mapping({}, base_window_s=bad)  # type: ignore[arg-type]
    with pytest.raises(RulesError, match=r"^the rules: must be a table"):
        rules_from_mapping([])  # type: ignore[arg-type]
    with pytest.raises(RulesError, match=r"^rules\[0\]\.window: 120s is not a multiple of the base window \(300s\)"):
        rules_from_mapping({"rules": [rule(window="2m")]}, base_window_s=300)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ({"start": "2026-11-30T00:00:00Z", "end": "2026-11-30T06:00:00Z"}, (0, 6)),
        ({"start": "2026-11-30T02:00:00+02:00", "end": "2026-11-30T06:00:00.000+00:00"}, (0, 6)),
        ({"start": datetime(2026, 11, 30, tzinfo=UTC), "end": datetime(2026, 11, 30, 6, tzinfo=UTC)}, (0, 6)),
    ],
)
def test_a_pinned_reference_is_read_as_utc(reference: dict[str, Any], expected: tuple[int, int]) -> None:
    midnight = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    got = one(drift(reference=reference))
    assert got.reference_s is None
    assert got.reference_range == (midnight + expected[0] * 3600, midnight + expected[1] * 3600)
    assert got.reference_period(midnight + 86400) == got.reference_range


def test_a_pinned_reference_in_toml_both_quoted_and_native() -> None:
    text = """
[[rules]]
name = "d1"
kind = "drift"
metric = "m"
reference = { start = "2026-11-30T00:00:00Z", end = "2026-11-30T06:00:00Z" }
[[rules]]
name = "d2"
kind = "drift"
metric = "m"
reference = { start = 2026-11-30T00:00:00Z, end = 2026-11-30T06:00:00Z }
[[rules]]
name = "d3"
kind = "drift"
metric = "m"
reference = "2h"
"""
    d1, d2, d3 = parse_rules(text).rules
    assert isinstance(d1, DriftRule) and isinstance(d2, DriftRule) and isinstance(d3, DriftRule)
    midnight = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    assert d1.reference_range == d2.reference_range == (midnight, midnight + 6 * 3600)
    assert d1.version != d2.version  # the names differ
    assert d3.reference_s == 7200 and d3.reference_period(10_000.0) == (2800.0, 10_000.0)
    with pytest.raises(RulesError, match=r"^rules\[1\]\.reference\.start: must carry a zone"):
        parse_rules(text.replace("start = 2026-11-30T00:00:00Z", "start = 2026-11-30T00:00:00"))
    with pytest.raises(RulesError, match=r"^rules\[1\]\.reference\.start: must be an ISO 8601 timestamp"):
        parse_rules(text.replace("start = 2026-11-30T00:00:00Z", "start = 2026-11-30"))


def test_matches_uses_the_metric_and_every_filter() -> None:
    r = one(rule(metric="thumbs_up", filters={"app": "chat", "route": "answer"}))
    base = {"metric": "thumbs_up", "app": "chat", "route": "answer", "model": "m1"}
    assert r.matches(base)
    assert not r.matches(base | {"metric": "latency_ms"})
    assert not r.matches(base | {"route": "search"})
    assert not r.matches(base | {"app": None})
    assert not r.matches({k: v for k, v in base.items() if k != "metric"})
    assert one(rule()).matches({"metric": "m"})  # no filters: every value of the metric
    guard = one({"name": "g", "kind": "guardrail"})
    assert guard.matches({"metric": "pii_output"}) and guard.matches({"metric": "guardrail_flag"})
    assert not guard.matches({"metric": "pii_input"})


def test_group_of_is_sorted_and_always_holds_the_app() -> None:
    r = one(rule(group_by=["route", "model", "app"]))
    assert r.group_by == ("app", "model", "route")
    labels = {"metric": "m", "route": "answer", "app": "chat", "prompt_version": "v3"}
    assert r.group_of(labels) == (("app", "chat"), ("model", None), ("route", "answer"))
    assert one(rule()).group_of(labels) == (("app", "chat"),)
    assert one(rule(group_by=[])).group_by == ("app",)
    loose = ThresholdRule(name="x", metric="m", comparator="<", threshold=1.0, group_by=("route",))
    assert loose.group_of(labels) == (("app", "chat"), ("route", "answer"))  # built by hand, still app and sorted


@pytest.mark.parametrize(
    ("comparator", "threshold", "resolve", "values"),
    [
        # value: (breach, clear, outcome)
        ("<", 0.4, 0.5, {0.3: (True, False, True), 0.4: (False, False, None), 0.45: (False, False, None)}),
        ("<", 0.4, 0.5, {0.5: (False, True, False), 0.9: (False, True, False)}),
        ("<=", 0.4, 0.5, {0.4: (True, False, True), 0.5: (False, False, None), 0.51: (False, True, False)}),
        (">", 800.0, 700.0, {900: (True, False, True), 800: (False, False, None), 700: (False, True, False)}),
        (">=", 800.0, 700.0, {800: (True, False, True), 700.5: (False, False, None), 699: (False, True, False)}),
        ("<", 0.4, None, {0.39: (True, False, True), 0.4: (False, True, False)}),
        (">", 5.0, None, {5.0: (False, True, False), 5.1: (True, False, True)}),
        (">", 5.0, 5.0, {5.0: (False, True, False), 5.1: (True, False, True)}),
        ("<", 0.4, 0.5, {float("nan"): (False, False, None)}),
    ],
)
def test_breach_clear_and_outcome_with_hysteresis(
    comparator: str, threshold: float, resolve: float | None, values: dict[float, tuple[bool, bool, bool | None]]
) -> None:
    r = one(rule(comparator=comparator, threshold=threshold, resolve_threshold=resolve, min_samples=10))
    for value, (breach, clear, outcome) in values.items():
        assert (r.breach(value), r.clear(value), r.outcome(value, 10)) == (breach, clear, outcome), value
        assert r.outcome(value, 9) is None  # too few samples: no decision either way
    assert r.outcome(None, 100) is None


def test_guardrail_outcome() -> None:
    g = one({"name": "g", "kind": "guardrail"})
    assert (g.outcome(1.0, 3), g.outcome(0.0, 3), g.outcome(None, 0), g.outcome(0.5, 1)) == (True, False, None, True)


def test_version_changes_with_what_is_evaluated_only() -> None:
    base = one(rule())
    assert base.version == one(rule()).version and len(base.version) == 12
    assert re.fullmatch(r"[0-9a-f]{12}", base.version)
    for change in (
        {"threshold": 2.0},
        {"comparator": "<"},
        {"window": "2m"},
        {"for": 2},
        {"clear_for": 2},
        {"cooldown": "5m"},
        {"filters": {"app": "chat"}},
        {"group_by": ["route"]},
        {"aggregation": "p95"},
        {"min_samples": 5},
        {"name": "other"},
        {"metric": "other"},
    ):
        assert one(rule(**change)).version != base.version, change
    for same in ({"severity": "critical"}, {"description": "words"}, {"cooldown": 0}, {"cooldown": "0s"}):
        assert one(rule(**same)).version == base.version, same
    rules = rules_from_mapping({"receivers": [receiver()], "rules": [rule(receivers=["ops"])]})
    assert rules.rules[0].version == base.version
    assert one(drift()).version != one(drift(reference="2h")).version
    assert one({"name": "r", "kind": "guardrail"}).version != base.version  # the kind is part of it
