from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sinks.parquet import PartitionedParquetWriter
from sinks.schemas import SCORES_SCHEMA
from streams.cli import app
from streams.local.sample import generate
from streams.sdk.schema import json_schema
from streams.settings import Settings

runner = CliRunner()


def test_schema_prints_the_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0 and json.loads(result.stdout) == json_schema()


def test_publish_refuses_a_file_with_invalid_lines(tmp_path: Path) -> None:
    good = json.dumps(generate(n_events=1, seed=1).events[0])
    path = tmp_path / "events.jsonl"
    path.write_text(f"{good}\n\n{{broken\n{json.dumps({'type': 'edit'})}\n")
    result = runner.invoke(app, ["publish", str(path)], env={"EVALSTREAM_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.exit_code == 2
    assert "line 3: malformed JSON" in result.stderr
    assert "line 4: event_id: Field required" in result.stderr
    assert "2 of 3 lines are invalid; nothing was sent" in result.stderr


@pytest.mark.parametrize("where", ["local", "s3"])
def test_sql_json_output(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from datetime import datetime

    root = str(tmp_path) if where == "local" else request.getfixturevalue("s3_root")  # a bucket: moto's server
    PartitionedParquetWriter(root, "scores", SCORES_SCHEMA).write(
        "t",
        0,
        0,
        1,
        [
            {
                "event_id": f"e{i}",
                "generation_id": "g",
                "ts": datetime(2026, 11, 25),
                "app": "a",
                "route": "r",
                "model": "m",
                "prompt_version": "v",
                "metric": "edit_ratio",
                "value": v,
            }
            for i, v in enumerate((0.25, 0.75))
        ],
    )
    env = {"EVALSTREAM_DATA_DIR": root}
    result = runner.invoke(
        app, ["sql", "SELECT metric, avg(value) AS mean FROM scores GROUP BY ALL", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"metric": "edit_ratio", "mean": 0.5}]
    bad = runner.invoke(app, ["sql", "SELECT nope FROM scores"], env=env)
    assert bad.exit_code == 1 and "nope" in bad.stderr


def test_sql_names_a_missing_bucket(s3_root: str) -> None:
    result = runner.invoke(app, ["sql", "SELECT 1"], env={"EVALSTREAM_DATA_DIR": "s3://no-such-bucket/data"})
    assert result.exit_code == 1 and "bucket 'no-such-bucket' does not exist" in result.stderr


@pytest.mark.integration
def test_publish_sends_a_valid_file_and_raw_sends_anything(settings: Settings, tmp_path: Path) -> None:
    from tests.helpers import consume_all

    env = settings.to_env()
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in generate(n_events=25, seed=2).events))
    result = runner.invoke(app, ["publish", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert f"sent 25 events to {settings.events_topic}" in result.stdout
    path.write_text("{broken\n" + json.dumps({"type": "edit"}))
    assert runner.invoke(app, ["publish", str(path), "--raw"], env=env).exit_code == 0
    values = [m.value() for m in consume_all(settings.bootstrap_servers, settings.events_topic, 4)]
    assert len(values) == 27 and b"{broken" in values


@pytest.mark.integration
def test_worker_refuses_an_invalid_eval_config(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "eval.toml"
    config.write_text('[apps.bot.topics.medical_advice]\nexemplars = ["take pills"]\nthreshold = 2\n')
    env = settings.model_copy(update={"eval_config": config}).to_env()
    result = runner.invoke(app, ["worker"], env=env)
    assert result.exit_code == 1
    assert "apps.bot.topics.medical_advice.threshold: Input should be less than or equal to 1" in result.stderr
    assert str(config) in result.stderr
    assert not multiprocessing.active_children()  # its encoder process was stopped with it
