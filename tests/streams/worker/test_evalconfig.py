"""The per-app evaluation config: resolution route → app → "*" → defaults, errors that name the field, reloads."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from streams.embedding.cache import CachedEncoder
from streams.worker.evalconfig import EXAMPLE_CONFIG, ConfigError, EvalConfig, ReferenceBook

CONFIG = """
[defaults]
topic_threshold = 0.4
weights = { semantic_similarity = 1.0 }

[apps.bot]
examples = ["good answer"]
weights = { semantic_similarity = 0.5, novelty = 0.5 }
[apps.bot.topics.medical]
exemplars = ["take pills"]
[apps.bot.topics.legal]
exemplars = ["sue them"]
threshold = 0.7
[apps.bot.routes.triage]
examples = ["triaged"]
[apps.bot.routes.triage.topics.legal]
exemplars = ["call a lawyer"]
threshold = 0.9
[apps.bot.routes.triage.topics.pricing]
exemplars = ["cheaper elsewhere"]

[apps."*"]
examples = ["generic"]
"""


def test_resolution_layers() -> None:
    cfg = EvalConfig.parse_toml(CONFIG)
    answer = cfg.resolve("bot", "answer")
    assert answer.examples == ("good answer",)
    assert [(t.name, t.threshold, t.exemplars) for t in answer.topics] == [
        ("legal", 0.7, ("sue them",)),
        ("medical", 0.4, ("take pills",)),
    ]
    assert answer.weights == {"semantic_similarity": 0.5, "novelty": 0.5}
    triage = cfg.resolve("bot", "triage")
    assert triage.examples == ("triaged",)
    assert [(t.name, t.threshold, t.exemplars) for t in triage.topics] == [
        ("legal", 0.9, ("call a lawyer",)),  # the route overrides the app's topic of the same name
        ("medical", 0.4, ("take pills",)),
        ("pricing", 0.4, ("cheaper elsewhere",)),
    ]
    assert triage.weights == {"semantic_similarity": 0.5, "novelty": 0.5}  # inherited from the app
    other = cfg.resolve("someone-else", None)
    assert other.examples == ("generic",) and other.topics == ()
    assert other.weights == {"semantic_similarity": 1.0}  # the defaults
    assert set(cfg.sentences()) == {
        "good answer", "take pills", "sue them", "triaged", "call a lawyer", "cheaper elsewhere", "generic",
    }  # fmt: skip


def test_empty_config_resolves_to_nothing() -> None:
    r = EvalConfig().resolve("a", "b")
    assert r.examples == () and r.topics == ()
    assert r.weights == {"semantic_similarity": 0.7, "novelty": 0.3}


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (
            '[apps.bot.topics.medical]\nexemplars = ["x"]\nthreshold = 1.5',
            "apps.bot.topics.medical.threshold",
            "Input should be less than or equal to 1",
        ),
        (
            "[apps.bot.topics.medical]\nexemplars = []",
            "apps.bot.topics.medical.exemplars",
            "List should have at least 1 item after validation, not 0",
        ),
        (
            '[apps.bot.topics.Medical-Advice]\nexemplars = ["x"]',
            "apps.bot.topics.Medical-Advice.[key]",
            "String should match pattern '^[a-z0-9_]+$'",
        ),
        ('[apps.bot]\nexampels = ["x"]', "apps.bot.exampels", "Extra inputs are not permitted"),
        (
            "[apps.bot]\nweights = { novelty = -1 }",
            "apps.bot.weights.novelty",
            "Input should be greater than or equal to 0",
        ),
        (
            "[apps.bot]\nweights = { fluency = 1 }",
            "apps.bot.weights.fluency.[key]",
            "Input should be 'semantic_similarity', 'novelty', 'relevance', 'context_relevance' or 'groundedness'",
        ),
        ('[apps.bot]\nexamples = [""]', "apps.bot.examples.0", "String should have at least 1 character"),
        ("[defaults]\ntopic_threshold = 0", "defaults.topic_threshold", "Input should be greater than 0"),
        ("[defaults.drift]\nalpha = 0.9", "defaults.drift.alpha", "must be a number in (0, 0.5), got 0.9"),
        (
            '[apps.bot.clusters]\nsignals = ["thumbs_down", "oops"]',
            "apps.bot.clusters.signals",
            "unknown signal 'oops' (known: thumbs_down, regenerated, refreshed, edited, guardrail, pii, error, "
            "low_quality)",
        ),
        (
            '[apps.bot]\nsupporting = "latency_ms"',
            "apps.bot.supporting",
            "must be a list of metric names, got 'latency_ms'",
        ),
        ("[apps.bot.routes.a]\nprimary = 'x'", "apps.bot.routes.a.primary", "Extra inputs are not permitted"),
    ],
)
def test_invalid_config_names_the_field(text: str, field: str, reason: str) -> None:
    """The whole message: the file, then one line per error with the field's path and pydantic's reason."""
    with pytest.raises(ConfigError) as info:
        EvalConfig.parse_toml(text, "my.toml")
    assert str(info.value) == f"my.toml: invalid evaluation config:\n  {field}: {reason}"


def test_every_invalid_field_is_named_on_its_own_line() -> None:
    text = "[defaults]\ntopic_threshold = 2\n[apps.bot]\nexamples = 3\n"
    with pytest.raises(ConfigError) as info:
        EvalConfig.parse_toml(text, "my.toml")
    assert str(info.value).splitlines() == [
        "my.toml: invalid evaluation config:",
        "  defaults.topic_threshold: Input should be less than or equal to 1",
        "  apps.bot.examples: Input should be a valid list",
    ]


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        EvalConfig.parse_toml("[apps\n", "bad.toml")
    assert (
        str(info.value)
        == "bad.toml: not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 6)"
    )
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        EvalConfig.load(missing)
    assert str(info.value) == f"{missing}: cannot read the evaluation config: No such file or directory"


def test_the_example_config_is_valid() -> None:
    cfg = EvalConfig.load(EXAMPLE_CONFIG)
    assert {t.name for t in cfg.resolve("support-bot", "answer").topics} >= {"medical_advice", "legal_advice"}
    assert cfg.resolve("support-bot", "summarize-ticket").examples != cfg.resolve("support-bot", "answer").examples


class LengthEncoder:
    """A deterministic stand-in for the model (the real one is tested in tests/streams/embedding/test_encoder.py)."""

    name = "length"
    dim = 2

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        v = np.array([[len(t), 1.0] for t in texts], np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_reference_book_embeds_all_references_at_start_and_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "eval.toml"
    path.write_text(CONFIG)
    inner = LengthEncoder()
    book = ReferenceBook(path, CachedEncoder(inner), check_every_s=0)
    assert set(inner.seen) == set(EvalConfig.parse_toml(CONFIG).sentences())
    refs = book.references("bot", "answer")
    assert refs.examples.shape == (1, 2) and [t.name for t, _ in refs.topics] == ["legal", "medical"]
    assert book.refresh() is False  # unchanged

    path.write_text('[apps.bot]\nexamples = ["a brand new example"]\n')
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    assert book.refresh() is True and book.reloads == 1
    assert "a brand new example" in inner.seen
    assert book.references("bot", "answer").resolved.examples == ("a brand new example",)
    assert book.references("bot", "answer").topics == ()

    path.write_text("[apps.bot]\nexamples = 3\n")  # invalid while running: keep the previous config
    os.utime(path, ns=(2, 2))
    assert book.refresh() is False
    assert book.references("bot", "answer").resolved.examples == ("a brand new example",)


def test_invalid_config_at_start_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "eval.toml"
    path.write_text("[apps.bot.topics.x]\nthreshold = 0.5\n")
    with pytest.raises(ConfigError, match=r"apps\.bot\.topics\.x\.exemplars: Field required"):
        ReferenceBook(path, CachedEncoder(LengthEncoder()))
