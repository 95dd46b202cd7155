"""The alert rules shown to users (README, docs/alerts.md, the demo's rules) are valid rules files."""

from __future__ import annotations

from pathlib import Path

import pytest

from metrics.alert_rules import parse_rules

ROOT = Path(__file__).resolve().parents[1]


def toml_blocks(path: Path, section: str) -> list[str]:
    text = path.read_text("utf-8").split(section, 1)[1]
    return [block.split("```", 1)[0] for block in text.split("```toml")[1:]]


@pytest.mark.parametrize(
    ("path", "section", "names"),
    [
        ("README.md", "## Live windows and alerts", {"thumbs-drop", "pii-leak"}),
        ("docs/alerts.md", "## Drift rules", {"latency-drift"}),
    ],
)
def test_the_documented_rules_parse(path: str, section: str, names: set[str]) -> None:
    [block, *_] = toml_blocks(ROOT / path, section)
    assert {rule.name for rule in parse_rules(block).rules} == names


def test_the_demo_rules_parse() -> None:
    rules = parse_rules((ROOT / "streams" / "local" / "demo_rules.toml").read_text("utf-8"))
    assert len(rules.rules) >= 4
