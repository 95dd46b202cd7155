"""Per-app evaluation config (TOML): good-output examples, banned topics, thresholds and quality weights.

The file (``EVALSTREAM_EVAL_CONFIG``) looks like this::

    [defaults]                       # optional; apply where an app or route says nothing
    topic_threshold = 0.5            # a topic trips when max cosine to its exemplars is >= this
    weights = { semantic_similarity = 0.7, novelty = 0.3 }

    [apps.support-bot]
    examples = ["You can reset your password from the sign-in page.", "..."]

    [apps.support-bot.topics.medical_advice]
    exemplars = ["You should take 400 mg of ibuprofen.", "..."]
    threshold = 0.55                 # optional, else defaults.topic_threshold

    [apps.support-bot.routes.triage]  # optional: a route replaces the app's examples / weights,
    examples = ["..."]               # and adds or overrides topics by name

    [apps."*"]                       # optional: used for apps the file does not name

Apps and the defaults may also name ``primary`` and ``supporting`` metrics, a ``drift`` table of thresholds and a
``clusters`` table (what counts as a failed generation),
for the API (:mod:`metrics.analysis`). A route's effective settings are: route → app → ``apps."*"`` → defaults.
Unknown keys, empty exemplar lists, thresholds outside (0, 1], negative weights and topic names that are not
``[a-z0-9_]+`` are errors; the message names the field, e.g. ``apps.support-bot.topics.medical_advice.threshold:
Input should be less than or equal to 1``. Weights may name ``semantic_similarity``, ``novelty``, ``relevance``,
``context_relevance`` and ``groundedness`` (the last two exist for generations that carry a ``context``).

Example::

    >>> cfg = EvalConfig.parse_toml('[apps.bot]\\nexamples = ["hi"]\\n[apps.bot.topics.legal]\\nexemplars = ["sue"]\\n')
    >>> r = cfg.resolve("bot", "answer")
    >>> r.examples, [(t.name, t.threshold) for t in r.topics], r.weights
    (('hi',), [('legal', 0.5)], {'semantic_similarity': 0.7, 'novelty': 0.3})
    >>> cfg.resolve("other", "x").examples
    ()
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from metrics.analysis import AnalysisConfigError, check_analysis
from metrics.judges import JudgeConfigError, parse_judges
from streams.embedding.cache import CachedEncoder

# The example config shipped with the package (the demo, the benchmarks and the tests use it).
EXAMPLE_CONFIG = Path(__file__).with_name("evalconfig.example.toml")
log = logging.getLogger("evalstream.evalconfig")

WeightName = Literal["semantic_similarity", "novelty", "relevance", "context_relevance", "groundedness"]
TopicName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)]
Sentence = Annotated[str, StringConstraints(min_length=1)]
Weights = dict[WeightName, Annotated[float, Field(ge=0)]]
DEFAULT_WEIGHTS: dict[str, float] = {"semantic_similarity": 0.7, "novelty": 0.3}


class ConfigError(ValueError):
    """The evaluation config is unreadable or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicSpec(_Strict):
    exemplars: list[Sentence] = Field(min_length=1)
    threshold: float | None = Field(default=None, gt=0, le=1)


class RouteSpec(_Strict):
    examples: list[Sentence] | None = None
    topics: dict[TopicName, TopicSpec] = Field(default_factory=dict)
    weights: Weights | None = None


class AppSpec(RouteSpec):
    routes: dict[str, RouteSpec] = Field(default_factory=dict)
    # read by the API (metrics.analysis), checked here when the file is loaded
    primary: str | None = None
    supporting: list[str] | None = None
    drift: dict[str, Any] | None = None
    clusters: dict[str, Any] | None = None


class Defaults(_Strict):
    topic_threshold: float = Field(default=0.5, gt=0, le=1)
    weights: Weights = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))  # type: ignore[arg-type]
    primary: str | None = None
    supporting: list[str] | None = None
    drift: dict[str, Any] | None = None
    clusters: dict[str, Any] | None = None


@dataclass(frozen=True)
class Topic:
    name: str
    threshold: float
    exemplars: tuple[str, ...]


@dataclass(frozen=True)
class Resolved:
    """What applies to one app and route."""

    examples: tuple[str, ...]
    topics: tuple[Topic, ...]
    weights: dict[str, float]


class EvalConfig(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    apps: dict[str, AppSpec] = Field(default_factory=dict)
    judges: dict[str, Any] | None = None  # LLM judges, for `evalstream judge` (metrics.judges checks them)

    @classmethod
    def parse_toml(cls, text: str, source: str = "<config>") -> EvalConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
        try:
            check_analysis(data)
            parse_judges(data)
        except (AnalysisConfigError, JudgeConfigError) as exc:
            raise ConfigError(f"{source}: invalid evaluation config:\n  {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = [f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()]
            raise ConfigError(f"{source}: invalid evaluation config:\n  " + "\n  ".join(lines)) from None

    @classmethod
    def load(cls, path: Path) -> EvalConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the evaluation config: {exc.strerror or exc}") from exc
        return cls.parse_toml(text, str(path))

    def resolve(self, app: str, route: str | None) -> Resolved:
        layers: list[RouteSpec] = []
        app_spec = self.apps.get(app) or self.apps.get("*")
        if app_spec is not None:
            if route is not None and route in app_spec.routes:
                layers.append(app_spec.routes[route])
            layers.append(app_spec)
        examples: list[str] = next((list(layer.examples) for layer in layers if layer.examples is not None), [])
        chosen = next((layer.weights for layer in layers if layer.weights), self.defaults.weights)
        weights = {str(name): float(value) for name, value in chosen.items()}
        topics: dict[str, Topic] = {}
        for layer in reversed(layers):  # app first, then the route overrides by name
            for name, spec in layer.topics.items():
                threshold = spec.threshold if spec.threshold is not None else self.defaults.topic_threshold
                topics[name] = Topic(name, threshold, tuple(spec.exemplars))
        return Resolved(tuple(examples), tuple(topics[n] for n in sorted(topics)), weights)

    def sentences(self) -> list[str]:
        """Every reference sentence in the file (to embed them all at start-up)."""
        out: list[str] = []
        for app in self.apps.values():
            for layer in (app, *app.routes.values()):
                out.extend(layer.examples or ())
                for topic in layer.topics.values():
                    out.extend(topic.exemplars)
        return list(dict.fromkeys(out))


@dataclass(frozen=True)
class References:
    """The embeddings of one route's references: examples ``(n, d)`` and one matrix per topic."""

    resolved: Resolved
    examples: np.ndarray
    topics: tuple[tuple[Topic, np.ndarray], ...]


class ReferenceBook:
    """The config plus its reference embeddings; reloads the file when it changes (checked at most once a second).

    A config that becomes invalid while the worker runs is reported in the log and the previous one stays in
    force; an invalid config at start-up raises :class:`ConfigError`.
    """

    def __init__(self, path: Path | None, encoder: CachedEncoder, check_every_s: float = 1.0) -> None:
        self.path = Path(path) if path is not None else None
        self.encoder = encoder
        self.check_every_s = check_every_s
        self.reloads = 0
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._config = EvalConfig()
        self._routes: dict[tuple[str, str | None], References] = {}
        if self.path is not None:
            self._stamp = self._file_stamp()
            self._install(EvalConfig.load(self.path))

    @property
    def config(self) -> EvalConfig:
        return self._config

    def _file_stamp(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _install(self, config: EvalConfig) -> None:
        sentences = config.sentences()
        if sentences:
            self.encoder.encode(sentences)  # all reference embeddings now, into the cache
        self._config = config
        self._routes = {}

    def refresh(self) -> bool:
        """Reload the file if it changed since the last check; True when a new config took effect."""
        if self.path is None or time.monotonic() - self._checked < self.check_every_s:
            return False
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                config = EvalConfig.load(self.path)
            except ConfigError as exc:
                log.error("keeping the previous evaluation config: %s", exc)
                return False
            self._install(config)
            self.reloads += 1
            log.info("evaluation config reloaded from %s", self.path)
            return True

    def references(self, app: str, route: str | None) -> References:
        key = (app, route)
        refs = self._routes.get(key)
        if refs is None:
            resolved = self._config.resolve(app, route)
            dim = self.encoder.dim
            examples = self.encoder.encode(resolved.examples) if resolved.examples else np.zeros((0, dim), np.float32)
            topics = tuple((t, self.encoder.encode(t.exemplars)) for t in resolved.topics)
            refs = self._routes[key] = References(resolved, examples, topics)
        return refs
