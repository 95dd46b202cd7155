"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against a running stack: a
worker that scored sample traffic (embeddings on, the example evaluation config, an alert rule that fires), and the
API serving the page. Every panel draws data points, the filters change what is shown and land in the URL, the
browser logs no error, and a screenshot is left in ``build/artifacts/dashboard.png``."""

from __future__ import annotations

import contextlib
import shutil
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sinks.catalog import landed_counts
from streams.local.launch import spawn_cli, stop, wait_for
from streams.local.sample import generate
from streams.sdk.publisher import Publisher
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker.app import TABLES
from streams.worker.evalconfig import EXAMPLE_CONFIG

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts"
PANELS = ("primary", "supporting", "compare", "drift", "clusters", "alerts", "components", "pipeline")
RULES = """
[[rules]]
name = "off-policy-answers"
kind = "guardrail"
metrics = ["guardrail_flag"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A worker that has scored 2,000 sample events of the 6 hours before the minute it started, stopped; then the
    API over its data: the page's URL for those 6 hours."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: .ci/run installs Debian's chromium package")
    work = tmp_path_factory.mktemp("dashboard")
    rules = work / "rules.toml"
    rules.write_text(RULES)
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        bootstrap_servers=kafka, events_topic=f"llm.events.{tag}", metrics_topic=f"llm.metrics.{tag}",
        alerts_topic=f"llm.alerts.{tag}", worker_id=f"evalstream-test-{tag}", data_dir=work / "data",
        topic_partitions=4, eval_config=EXAMPLE_CONFIG, alert_rules=rules, window_idle_s=3.0,
        worker_metrics_port=0,
    )  # fmt: skip
    ensure_topics(settings, tables=TABLES)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    traffic = generate(n_events=2000, n_sessions=80, n_malformed=10, seed=11, end=end)
    worker = spawn_cli(["worker"], settings.to_env(), work / "worker.log")
    try:
        with Publisher(settings.bootstrap_servers, settings.events_topic) as pub:
            pub.publish_many(traffic.events)
            for key, value in traffic.malformed:
                pub.publish_raw(value, key)
        wait_for(lambda: landed_counts(settings.data_dir) == (len(traffic.events), 10) or None, 300,
                 what="the worker", alive=worker)  # fmt: skip
        wait_for(lambda: any((settings.data_dir / "alerts").glob("dt=*/*.parquet")) or None, 120,
                 what="an alert", alive=worker)  # fmt: skip
    finally:
        stop(worker)
    query = f"/?range=6h&until={end.isoformat().replace('+00:00', 'Z')}"
    with serve_api(settings.to_env(), work / "api.log") as url:
        yield {"page": url + query, "env": settings.to_env(), "work": work, "query": query}


@contextlib.contextmanager
def serve_api(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    api = spawn_cli(["api"], {**env, "EVALSTREAM_API_PORT": str(port)}, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url + "/health") or None, 60, what="the API", alive=api)
        yield url
    finally:
        stop(api)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def points(page: Any, panel: str) -> int:
    return int(page.get_attribute(f"#panel-{panel}", "data-points") or 0)


def test_every_panel_draws_data_and_the_filters_change_it(stack: dict[str, Any]) -> None:
    page_url = stack["page"]
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{page_url}&window=1h&split=model")
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            drawn = {name: points(page, name) for name in PANELS}
            assert all(n > 0 for n in drawn.values()), drawn
            assert page.locator("#panel-primary .js-plotly-plot").count() == 1
            legend = "els => els.map(e => e.textContent)"
            by_model = set(page.eval_on_selector_all("#panel-primary .legendtext", legend))
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            page.select_option("select[name=split]", "prompt_version")  # a filter: redrawn, and in the URL
            page.wait_for_function("document.querySelector('#panel-primary h2').textContent.includes('prompt_version')")
            page.wait_for_selector("#panel-primary[data-loaded='1'] .js-plotly-plot", timeout=60_000)
            by_version = set(page.eval_on_selector_all("#panel-primary .legendtext", legend))
            assert by_model and by_version and by_model.isdisjoint(by_version), (by_model, by_version)
            assert "split=prompt_version" in page.url

            page.goto(page_url.split("?")[0] + "?range=15m&until=2000-01-01T00:00:00Z")  # a range with nothing in it
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            assert points(page, "primary") == 0 and "no data" in page.inner_text("#panel-primary")
        finally:
            browser.close()
    assert errors == []


def test_the_page_and_its_scripts_come_from_the_api_itself(stack: dict[str, Any]) -> None:
    root = stack["page"].split("/?")[0]
    page = urllib.request.urlopen(root + "/", timeout=10).read().decode()
    assert '<script src="/static/plotly.min.js">' in page and "://" not in page  # nothing from elsewhere
    script = urllib.request.urlopen(root + "/static/dashboard.js", timeout=10).read().decode()
    assert "://" not in script
    plotly = urllib.request.urlopen(root + "/static/plotly.min.js", timeout=10).read()
    assert len(plotly) > 1_000_000 and b"plotly.js" in plotly[:2000]


def test_with_api_keys_the_page_asks_for_the_key_once(stack: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    env = {**stack["env"], "EVALSTREAM_API_KEYS": "k-one,k-two"}
    with serve_api(env, stack["work"] / "api-keys.log") as url, sync_playwright() as p:
        assert urllib.request.urlopen(url + "/", timeout=10).status == 200  # the page itself holds no data
        try:
            urllib.request.urlopen(url + "/v1/alerts", timeout=10)
            raise AssertionError("answered without a key")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url + stack["query"])
            page.wait_for_selector("#login[open]", timeout=60_000)
            page.fill("#login input[name=key]", "k-two")
            page.click("#login button")
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            assert points(page, "primary") > 0
            page.reload()  # kept in the browser: not asked again
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            assert page.locator("#login[open]").count() == 0 and points(page, "primary") > 0
        finally:
            browser.close()
