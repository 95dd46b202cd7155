"""Per-app analysis settings of the evaluation config: the primary metric, the supporting ones, drift thresholds.

Read by the API (``/v1/compare``'s default metrics, ``/v1/drift``'s thresholds and alpha) and checked by the
worker when it loads the file, from the same TOML (``EVALSTREAM_EVAL_CONFIG``)::

    [defaults]
    primary = "thumbs_up"                                   # what "better" means, first in every comparison
    supporting = ["regenerated", "edit_ratio", "latency_ms"]
    [defaults.drift]                                        # each key optional
    alpha = 0.01
    mmd2_threshold = 0.001                                  # embeddings
    psi_threshold = 0.2                                     # numeric scores
    js_threshold = 0.1                                      # route / model / prompt_version

    [defaults.clusters]                                     # failure clusters; each key optional
    signals = ["thumbs_down", "regenerated", "edited", "guardrail", "error"]
    edit_ratio_threshold = 0.5                              # "edited" means edit_ratio >= this
    quality_threshold = 0.3                                 # "low_quality" means quality < this
    embedding = "input"                                     # cluster what users asked, or "output"

    [apps.support-bot]                                      # an app (or "*") overrides the defaults key by key
    primary = "edit_accepted"
    [apps.support-bot.drift]
    psi_threshold = 0.25

Plain data (the parsed TOML), checked by hand: this module needs nothing but the standard library.

Example::

    >>> cfg = {"defaults": {"supporting": ["latency_ms"]}, "apps": {"bot": {"primary": "edit_ratio"}}}
    >>> s = analysis_settings(cfg, "bot")
    >>> s.primary, s.supporting, s.drift.psi_threshold
    ('edit_ratio', ('latency_ms',), 0.2)
    >>> analysis_settings({"defaults": {"drift": {"alpha": 2}}}, None)
    Traceback (most recent call last):
    ...
    metrics.analysis.AnalysisConfigError: defaults.drift.alpha: must be a number in (0, 0.5), got 2
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

_METRIC = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
FAILURE_SIGNALS = ("thumbs_down", "regenerated", "refreshed", "edited", "guardrail", "pii", "error", "low_quality")
_LIMITS = {"alpha": (0.0, 0.5), "mmd2_threshold": (0.0, 1.0), "psi_threshold": (0.0, 100.0), "js_threshold": (0.0, 1.0)}


class AnalysisConfigError(ValueError):
    """An analysis key of the evaluation config is invalid; the message names it."""


@dataclass(frozen=True)
class DriftSettings:
    """``drifted`` needs the statistic at or above its threshold and p < alpha (see :mod:`metrics.drift`). The
    thresholds are effect-size floors, so that a huge sample does not flag a tiny change."""

    alpha: float = 0.01
    # unbiased MMD² of unit vectors: another style of text ~0.035; a fifth of it mixed in ~0.0015
    mmd2_threshold: float = 0.001
    psi_threshold: float = 0.2  # the usual reading: < 0.1 no shift, 0.1-0.2 moderate, > 0.2 significant
    js_threshold: float = 0.1


@dataclass(frozen=True)
class FailureSettings:
    """What counts as a failed generation for the failure clusters, and how they are clustered (see
    :mod:`metrics.clusters`). A generation fails when any of ``signals`` holds: ``thumbs_down`` (its latest thumbs
    is down), ``regenerated``, ``refreshed``, ``edited`` (latest edit ratio >= ``edit_ratio_threshold``),
    ``guardrail`` (a banned topic's flag), ``pii`` (PII in the output), ``error``, ``low_quality`` (quality <
    ``quality_threshold``). ``pii`` is off by default: many outputs legitimately hold an address or a number."""

    signals: tuple[str, ...] = tuple(s for s in FAILURE_SIGNALS if s != "pii")
    edit_ratio_threshold: float = 0.5
    quality_threshold: float = 0.3
    embedding: str = "input"
    min_failures: int = 20
    min_cluster_size: int = 10
    match_similarity: float = 0.8  # a new centroid this close to a previous cluster's keeps its id


_CLUSTER_KEYS: dict[str, tuple[type, float, float]] = {
    "edit_ratio_threshold": (float, 0.0, 1.0),
    "quality_threshold": (float, 0.0, 1.0),
    "min_failures": (int, 2, 1_000_000),
    "min_cluster_size": (int, 2, 100_000),
    "match_similarity": (float, 0.0, 1.0),
}


@dataclass(frozen=True)
class AnalysisSettings:
    primary: str | None = None
    supporting: tuple[str, ...] = ()
    drift: DriftSettings = field(default_factory=DriftSettings)
    clusters: FailureSettings = field(default_factory=FailureSettings)


def check_signals(signals: object, where: str) -> tuple[str, ...]:
    """``signals`` as a tuple when it is a non-empty list of known failure signals, else an error naming ``where``.

    >>> check_signals(["error", "thumbs_down"], "signals")
    ('error', 'thumbs_down')
    >>> check_signals([], "signals")
    Traceback (most recent call last):
    ...
    metrics.analysis.AnalysisConfigError: signals: must be a non-empty list of signals, got []
    """
    if not isinstance(signals, list | tuple) or not signals:
        raise AnalysisConfigError(f"{where}: must be a non-empty list of signals, got {signals!r}")
    for s in signals:
        if s not in FAILURE_SIGNALS:
            raise AnalysisConfigError(f"{where}: unknown signal {s!r} (known: {', '.join(FAILURE_SIGNALS)})")
    return tuple(dict.fromkeys(signals))


def signals_from_text(text: str | None, where: str) -> tuple[str, ...] | None:
    """A comma-separated list of signals (a query parameter, a command-line option), checked; None when not
    given (None or empty).

    >>> signals_from_text("error, thumbs_down", "signals")
    ('error', 'thumbs_down')
    """
    if not text:
        return None
    return check_signals([s.strip() for s in text.split(",") if s.strip()], where)


def _check_clusters(clusters: object, where: str) -> None:
    if not isinstance(clusters, Mapping):
        raise AnalysisConfigError(f"{where}: must be a table")
    for key, value in clusters.items():
        if key == "signals":
            check_signals(value, f"{where}.signals")
        elif key == "embedding":
            if value not in ("input", "output"):
                raise AnalysisConfigError(f'{where}.embedding: must be "input" or "output", got {value!r}')
        elif key in _CLUSTER_KEYS:
            kind, low, high = _CLUSTER_KEYS[key]
            ok = not isinstance(value, bool) and isinstance(value, int if kind is int else int | float)
            if not ok or not low <= value <= high:
                what = "an integer" if kind is int else "a number"
                raise AnalysisConfigError(f"{where}.{key}: must be {what} in [{low:g}, {high:g}], got {value!r}")
        else:
            known = ", ".join(["signals", "embedding", *_CLUSTER_KEYS])
            raise AnalysisConfigError(f"{where}.{key}: unknown key (known: {known})")


def _check_layer(layer: Mapping[str, Any], where: str) -> None:
    primary = layer.get("primary")
    if primary is not None and not (isinstance(primary, str) and _METRIC.match(primary)):
        raise AnalysisConfigError(f"{where}.primary: must be a metric name, got {primary!r}")
    supporting = layer.get("supporting")
    if supporting is not None and not (
        isinstance(supporting, list) and all(isinstance(m, str) and _METRIC.match(m) for m in supporting)
    ):
        raise AnalysisConfigError(f"{where}.supporting: must be a list of metric names, got {supporting!r}")
    if layer.get("clusters") is not None:
        _check_clusters(layer["clusters"], f"{where}.clusters")
    drift = layer.get("drift")
    if drift is None:
        return
    if not isinstance(drift, Mapping):
        raise AnalysisConfigError(f"{where}.drift: must be a table")
    for key, value in drift.items():
        if key not in _LIMITS:
            raise AnalysisConfigError(f"{where}.drift.{key}: unknown key (known: {', '.join(_LIMITS)})")
        low, high = _LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low < value < high:
            raise AnalysisConfigError(f"{where}.drift.{key}: must be a number in ({low:g}, {high:g}), got {value!r}")


def check_analysis(config: Mapping[str, Any]) -> None:
    """Raise :class:`AnalysisConfigError` for the first invalid analysis key of a parsed config."""
    _check_layer(config.get("defaults") or {}, "defaults")
    for name, app in (config.get("apps") or {}).items():
        _check_layer(app or {}, f"apps.{name}")


def analysis_settings(config: Mapping[str, Any], app: str | None) -> AnalysisSettings:
    """The settings for ``app`` (None: the defaults): the app's keys, else ``apps."*"``'s, else the defaults'."""
    check_analysis(config)
    apps = config.get("apps") or {}
    layers = [config.get("defaults") or {}]
    if app is not None and (app in apps or "*" in apps):
        layers.append(apps.get(app) or apps["*"])
    settings = AnalysisSettings()
    for layer in layers:  # defaults first, then the app overrides key by key
        if layer.get("primary") is not None:
            settings = replace(settings, primary=layer["primary"])
        if layer.get("supporting") is not None:
            settings = replace(settings, supporting=tuple(layer["supporting"]))
        clusters = dict(layer.get("clusters") or {})
        if clusters:
            if "signals" in clusters:
                clusters["signals"] = tuple(dict.fromkeys(clusters["signals"]))
            for key, (kind, _, _) in _CLUSTER_KEYS.items():
                if key in clusters:
                    clusters[key] = kind(clusters[key])
            settings = replace(settings, clusters=replace(settings.clusters, **clusters))
        drift = layer.get("drift") or {}
        if drift:
            settings = replace(settings, drift=replace(settings.drift, **{k: float(v) for k, v in drift.items()}))
    return settings
