"""The judges without Kafka: the client against the stand-in server (retries, refusals), rate limit, budget, cache,
sampling, unreadable answers, and config errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from metrics.judges import Judge, JudgeConfigError, parse_answer, parse_judges
from streams.judges.client import ChatClient, DailyBudget, JudgeCallError, RateLimit
from streams.judges.runner import JudgeCache, JudgeRunner
from streams.sdk.schema import GenerationEvent, validate_event
from streams.worker.evalconfig import ConfigError, EvalConfig
from tests.judge_standin import stand_in

TEMPLATE = "Rate the answer. Question: {input} Answer: {output} Context: {context}"


def gen(i: int, output: str = "Here is how.", **extra: Any) -> GenerationEvent:
    event = validate_event({
        "type": "generation", "event_id": f"e{i}", "ts": "2026-11-30T10:00:00Z", "session_id": "s", "app": "bot",
        "generation_id": f"g{i}", "route": "r", "model": "m", "prompt_version": "v1", "input": f"question {i}",
        "output": output, **extra,
    })  # fmt: skip
    assert isinstance(event, GenerationEvent)
    return event


def test_the_client_retries_what_may_pass_and_stops_at_what_will_not() -> None:
    with stand_in() as server:
        client = ChatClient(server.url, "judge-model", api_key="k-1", backoff_s=0.01)
        server.fail_next = [429, 503, 500]
        done = client.complete("hello there")
        assert done.attempts == 4 and done.tokens_in == 2 and done.tokens_out == 7 and server.calls == 1
        assert server.seen[-1]["auth"] == "Bearer k-1" and server.seen[-1]["body"]["model"] == "judge-model"
        assert server.seen[-1]["body"]["temperature"] == 0
        server.fail_next = [400]
        with pytest.raises(JudgeCallError, match="HTTP 400"):
            client.complete("x")  # not retryable
        server.fail_next = [503] * 10
        with pytest.raises(JudgeCallError, match="gave up after 5 attempts: HTTP 503"):
            client.complete("x")
        server.fail_next = []
    with pytest.raises(JudgeCallError, match="ConnectError"):
        ChatClient("http://127.0.0.1:1/v1", "m", retries=1, backoff_s=0.01).complete("x")


def test_rate_limit_and_daily_budget() -> None:
    now = [0.0]
    limit = RateLimit(60, clock=lambda: now[0])  # one a second
    assert [limit.wait_s() for _ in range(3)] == [0.0, 1.0, 2.0]
    now[0] = 10.0
    assert limit.wait_s() == 0.0
    day = ["2026-11-30"]
    budget = DailyBudget(100, today=lambda: day[0])
    budget.spend(99)
    assert budget.allows()
    budget.spend(1)
    assert not budget.allows()
    day[0] = "2026-12-01"
    assert budget.allows() and budget.used == 0


def test_runner_caches_samples_and_keeps_to_its_budget(tmp_path: Path) -> None:
    with stand_in() as server:
        client = ChatClient(server.url, "m", backoff_s=0.01)
        judge = Judge("helpful", TEMPLATE, requests_per_minute=100_000)
        runner = JudgeRunner([judge], client, JudgeCache(tmp_path / "c.sqlite"))
        outputs = ["Sorry, I can't." if i % 2 else "Here is how." for i in range(20)]
        events = [e for i in range(20) for e in runner.judge(gen(i, outputs[i]))]
        assert server.calls == 20 and [e["score"] for e in events[:2]] == [0.9, 0.1]
        assert all(e["event_id"] == f"judge-helpful-{judge.version}-g{i}" for i, e in enumerate(events))
        assert all(validate_event(e).type == "judgement" for e in events)
        # a replay (a new runner over the same cache: a restart) pays nothing and says the same
        again = JudgeRunner([judge], client, JudgeCache(tmp_path / "c.sqlite"))
        replayed = [e["score"] for i in range(20) for e in again.judge(gen(i, outputs[i]))]
        assert replayed == [e["score"] for e in events] and server.calls == 20
        assert again.counters.cached == 20 and again.counters.requests == 0
        # a new template is a new judge version: judged anew
        changed = Judge("helpful", TEMPLATE + " Be strict.", requests_per_minute=100_000)
        JudgeRunner([changed], client, JudgeCache(tmp_path / "c.sqlite")).judge(gen(0))
        assert server.calls == 21 and changed.version != judge.version
        # sampling: the same generations every time, about the rate
        half = Judge("half", TEMPLATE, sampling=0.5)
        picked = [i for i in range(1000) if half.sampled(f"g{i}")]
        assert picked == [i for i in range(1000) if half.sampled(f"g{i}")] and 430 < len(picked) < 570
        # a budget of 15 tokens a day: the first request (19 tokens) spends it, the rest are skipped and counted
        poor = JudgeRunner([Judge("poor", TEMPLATE, tokens_per_day=15)], client, JudgeCache(tmp_path / "p.sqlite"))
        judged = [e for i in range(5) for e in poor.judge(gen(100 + i))]
        assert len(judged) == 1 and poor.counters.over_budget == 4 and server.calls == 22
        # errors and contexts
        server.fail_next = [400]
        assert runner.judge(gen(200)) == [] and runner.counters.errors == 1
        runner.judge(gen(201, context=["Refunds take 5 days."]))
        assert "Context: Refunds take 5 days." in server.seen[-1]["body"]["messages"][0]["content"]


def test_an_unreadable_answer_is_kept_raw_and_counted(tmp_path: Path) -> None:
    with stand_in() as server:
        runner = JudgeRunner([Judge("helpful", TEMPLATE)], ChatClient(server.url, "m"), JudgeCache(tmp_path / "c"))
        [event] = runner.judge(gen(1, "GARBAGE"))
    assert event["parsed"] is False and event["raw_answer"] == "I cannot rate this." and "score" not in event
    assert runner.counters.unparsed == 1
    assert validate_event(event).type == "judgement"


def test_cost_from_the_price_table_and_nothing_for_a_cached_answer(tmp_path: Path) -> None:
    with stand_in() as server:
        client = ChatClient(server.url, "judge-model")
        priced = JudgeRunner([Judge("helpful", "{output}")], client, JudgeCache(tmp_path / "c"), "judge-model",
                             {"judge-model": (1.0, 2.0)})  # fmt: skip
        [first] = priced.judge(gen(1, "two words"))
        [again] = priced.judge(gen(1, "two words"))
    assert (first["tokens_in"], first["tokens_out"]) == (2, 7)
    assert first["cost_usd"] == pytest.approx((2 * 1.0 + 7 * 2.0) / 1e6) and again["cost_usd"] == 0.0


def test_generations_with_an_error_or_elsewhere_are_not_judged(tmp_path: Path) -> None:
    class Never:
        def complete(self, prompt: str, model: str | None = None) -> Any:
            raise AssertionError("no request expected")

    judge = Judge("helpful", TEMPLATE, apps=("other",))
    runner = JudgeRunner([judge, Judge("all", TEMPLATE)], Never(), JudgeCache(tmp_path / "c"))
    assert runner.judge(gen(1, "", error="timeout")) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"template": "{question}"}, "judges.j.template: unknown placeholder {question}"),
        ({"template": "{input"}, "judges.j.template: "),
        ({"template": ""}, "judges.j.template: must be a non-empty string"),
        ({"template": "{input}", "sampling": 1.5}, "judges.j.sampling: must be a number in [0, 1], got 1.5"),
        ({"template": "{input}", "sampling": -0.1}, "judges.j.sampling: must be a number in [0, 1], got -0.1"),
        ({"template": "{input}", "tokens_per_day": 1.5}, "judges.j.tokens_per_day: must be an integer"),
        ({"template": "{input}", "labels": {"good": 2}}, "judges.j.labels: must map labels to scores in [0, 1]"),
        ({"template": "{input}", "temperature": 0}, "judges.j.temperature: unknown key"),
        ("x", "judges.j: must be a table"),
    ],
)
def test_bad_judges_stop_start_up_naming_the_field(spec: Any, message: str) -> None:
    with pytest.raises(JudgeConfigError) as info:
        parse_judges({"judges": {"j": spec}})
    assert str(info.value).startswith(message)


def test_the_workers_config_refuses_a_bad_judge_too() -> None:
    with pytest.raises(ConfigError, match=r"judges\.j\.sampling: must be a number in \[0, 1\], got 2"):
        EvalConfig.parse_toml('[judges.j]\ntemplate = "{output}"\nsampling = 2\n', "my.toml")
    assert EvalConfig.parse_toml('[judges.j]\ntemplate = "{output}"\n', "my.toml").judges == {
        "j": {"template": "{output}"}
    }


def test_answers_in_labels() -> None:
    labels = {"good": 1.0, "bad": 0.0}
    assert parse_answer('{"label": "bad", "reason": "off topic"}', labels) == (0.0, "bad", "off topic")
    assert parse_answer("Label: GOOD", labels) == (1.0, "good", None)
    assert parse_answer('{"label": "meh"}', labels) == (None, None, None)
    assert parse_answer('{"score": 1.5}', None) == (None, None, None)
    assert parse_answer('{"score": "0.3", "reason": "ok"}', None) == (0.3, None, "ok")
