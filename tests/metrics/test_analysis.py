"""The analysis keys of the evaluation config: layering and clear errors."""

from __future__ import annotations

import pytest

from metrics.analysis import AnalysisConfigError, DriftSettings, analysis_settings

CONFIG = {
    "defaults": {"primary": "thumbs_up", "supporting": ["regenerated"], "drift": {"alpha": 0.05}},
    "apps": {
        "bot": {"primary": "edit_accepted", "drift": {"psi_threshold": 0.3}},
        "*": {"supporting": ["latency_ms", "cost_usd"]},
    },
}


def test_an_app_overrides_the_defaults_key_by_key() -> None:
    bot = analysis_settings(CONFIG, "bot")
    assert (bot.primary, bot.supporting) == ("edit_accepted", ("regenerated",))
    assert bot.drift == DriftSettings(alpha=0.05, psi_threshold=0.3)
    other = analysis_settings(CONFIG, "unnamed-app")  # "*" stands for the apps the file does not name
    assert (other.primary, other.supporting, other.drift.alpha) == ("thumbs_up", ("latency_ms", "cost_usd"), 0.05)
    assert analysis_settings(CONFIG, None).supporting == ("regenerated",)
    assert analysis_settings({}, "bot") == analysis_settings({}, None)
    assert analysis_settings({}, None).drift == DriftSettings()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"defaults": {"primary": 3}}, "defaults.primary: must be a metric name, got 3"),
        ({"apps": {"bot": {"supporting": "latency_ms"}}}, "apps.bot.supporting: must be a list of metric names"),
        ({"apps": {"bot": {"drift": {"alfa": 0.1}}}}, "apps.bot.drift.alfa: unknown key (known: alpha,"),
        ({"defaults": {"drift": {"psi_threshold": -1}}}, "defaults.drift.psi_threshold: must be a number in (0, 100)"),
        ({"defaults": {"drift": {"alpha": True}}}, "defaults.drift.alpha: must be a number in (0, 0.5), got True"),
        ({"defaults": {"drift": 0.1}}, "defaults.drift: must be a table"),
    ],
)
def test_invalid_keys_name_the_field(config: dict, message: str) -> None:
    with pytest.raises(AnalysisConfigError) as raised:
        analysis_settings(config, None)
    assert message in str(raised.value)


def test_failure_settings_default_and_override_key_by_key() -> None:
    from metrics.analysis import FAILURE_SIGNALS, FailureSettings

    assert analysis_settings({}, None).clusters == FailureSettings()
    assert "pii" not in FailureSettings().signals and set(FailureSettings().signals) < set(FAILURE_SIGNALS)
    config = {
        "defaults": {"clusters": {"signals": ["error", "error", "thumbs_down"], "min_failures": 50}},
        "apps": {"bot": {"clusters": {"edit_ratio_threshold": 0.3, "embedding": "output"}}},
    }
    bot = analysis_settings(config, "bot").clusters
    assert bot.signals == ("error", "thumbs_down") and bot.min_failures == 50
    assert bot.edit_ratio_threshold == 0.3 and bot.embedding == "output"
    assert analysis_settings(config, "other").clusters.embedding == "input"


@pytest.mark.parametrize(
    ("clusters", "message"),
    [
        ({"signals": ["sideways"]}, "defaults.clusters.signals: unknown signal 'sideways' (known: thumbs_down,"),
        ({"signals": []}, "defaults.clusters.signals: must be a non-empty list of signals, got []"),
        ({"signals": "error"}, "defaults.clusters.signals: must be a non-empty list of signals, got 'error'"),
        ({"embedding": "both"}, 'defaults.clusters.embedding: must be "input" or "output", got \'both\''),
        ({"min_failures": 1}, "defaults.clusters.min_failures: must be an integer in [2, 1e+06], got 1"),
        ({"min_cluster_size": 2.5}, "defaults.clusters.min_cluster_size: must be an integer in [2, 100000], got 2.5"),
        ({"quality_threshold": True}, "defaults.clusters.quality_threshold: must be a number in [0, 1], got True"),
        ({"match_similarity": 1.5}, "defaults.clusters.match_similarity: must be a number in [0, 1], got 1.5"),
        ({"radius": 2}, "defaults.clusters.radius: unknown key (known: signals, embedding, edit_ratio_threshold,"),
        ("yes", "defaults.clusters: must be a table"),
    ],
)
def test_invalid_cluster_keys_name_the_field(clusters: object, message: str) -> None:
    with pytest.raises(AnalysisConfigError) as info:
        analysis_settings({"defaults": {"clusters": clusters}}, None)
    assert str(info.value).startswith(message)
