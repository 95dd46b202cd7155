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
class AnalysisSettings:
    primary: str | None = None
    supporting: tuple[str, ...] = ()
    drift: DriftSettings = field(default_factory=DriftSettings)


def _check_layer(layer: Mapping[str, Any], where: str) -> None:
    primary = layer.get("primary")
    if primary is not None and not (isinstance(primary, str) and _METRIC.match(primary)):
        raise AnalysisConfigError(f"{where}.primary: must be a metric name, got {primary!r}")
    supporting = layer.get("supporting")
    if supporting is not None and not (
        isinstance(supporting, list) and all(isinstance(m, str) and _METRIC.match(m) for m in supporting)
    ):
        raise AnalysisConfigError(f"{where}.supporting: must be a list of metric names, got {supporting!r}")
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
        drift = layer.get("drift") or {}
        if drift:
            settings = replace(settings, drift=replace(settings.drift, **{k: float(v) for k, v in drift.items()}))
    return settings
