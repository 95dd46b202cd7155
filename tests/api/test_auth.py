"""API keys: with keys set, every route the OpenAPI spec lists and ``/metrics`` answer 401 without a valid key and
work with one; ``/health``, ``/`` and ``/static/*`` stay open; a keys file works like the variable; keys are
compared in constant time; and without keys the API refuses to listen beyond loopback unless told to."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import api.auth
from api.app import create_app
from api.auth import PUBLIC_PATHS, KeyChecker, bind_problem, load_keys
from api.settings import ApiSettings
from api.settings import get_settings as api_settings
from streams.cli import app as cli
from streams.local.launch import spawn_cli, stop, wait_for

KEY = "es-live-7f3a9c2e5b814d6a"
OTHER = "es-ci-0b1c2d3e4f5a6b7c8d9e"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EVALSTREAM_API_KEYS", f"{KEY}, {OTHER}")
    api_settings.cache_clear()
    with TestClient(create_app()) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sample(schema: dict[str, Any], name: str) -> str:
    """A plausible value of a parameter from its OpenAPI schema (the routes may still reject it: 404 or 422)."""
    options = schema.get("anyOf") or [schema]
    chosen = next((o for o in options if o.get("type") != "null"), options[0])
    if "enum" in chosen:
        return str(chosen["enum"][0])
    if chosen.get("format") == "date-time" or name.endswith(("since", "until")):
        return "2026-11-30T00:00:00Z"
    kind = chosen.get("type")
    if kind in ("integer", "number"):
        return str(chosen.get("minimum", 1))
    if kind == "boolean":
        return "false"
    return "x"


def v1_requests(spec: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """Every ``/v1`` GET route of the spec as (URL with sample path values, sample required query parameters)."""
    found = []
    for path, methods in spec["paths"].items():
        if not path.startswith("/v1") or "get" not in methods:
            continue
        url, query = path, {}
        for param in methods["get"].get("parameters", []):
            value = sample(param.get("schema", {}), param["name"])
            if param["in"] == "path":
                url = url.replace("{" + param["name"] + "}", value)
            elif param.get("required"):
                query[param["name"]] = value
        found.append((url, query))
    return found


def test_every_v1_route_and_metrics_need_a_key(client: TestClient) -> None:
    spec = client.get("/openapi.json", headers=auth(KEY)).json()
    routes = v1_requests(spec)
    assert len(routes) >= 11 and any(u == "/v1/pipeline" for u, _ in routes)
    for url, query in [*routes, ("/metrics", {})]:
        for headers in ({}, auth("wrong-key"), auth(KEY[:-1]), {"Authorization": f"Basic {KEY}"}):
            r = client.get(url, params=query, headers=headers)
            assert r.status_code == 401, (url, headers, r.status_code)
            assert r.headers["www-authenticate"].startswith("Bearer"), url
        for key in (KEY, OTHER):
            r = client.get(url, params=query, headers=auth(key))
            assert r.status_code in (200, 404, 422), (url, query, r.status_code, r.text[:300])
    invalid = client.get("/v1/pipeline", headers=auth("nope"))
    assert 'error="invalid_token"' in invalid.headers["www-authenticate"]
    assert client.get("/v1/pipeline", headers={"Authorization": f"bearer {KEY}"}).status_code == 200


def test_the_docs_and_unknown_paths_need_a_key_too(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json", "/no-such-path", "/static-offline-docs/swagger-ui.css"):
        assert client.get(path).status_code == 401, path
    assert client.get("/docs", headers=auth(KEY)).status_code == 200
    assert client.get("/no-such-path", headers=auth(KEY)).status_code == 404


def test_health_the_dashboard_and_its_assets_are_open(client: TestClient) -> None:
    assert PUBLIC_PATHS == ("/health", "/", "/static/*")
    assert client.get("/health").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/static/nothing-here.js").status_code == 404  # open, and not there


def test_a_keys_file_with_comments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# evalstream API keys\n{KEY}   # dashboard\n\n  {OTHER}\n# old-key-revoked\n")
    settings = ApiSettings(api_keys_file=keys)
    assert load_keys(settings) == (KEY, OTHER)
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EVALSTREAM_API_KEYS_FILE", str(keys))
    api_settings.cache_clear()
    client = TestClient(create_app())
    assert client.get("/v1/pipeline").status_code == 401
    assert client.get("/v1/pipeline", headers=auth("old-key-revoked")).status_code == 401
    assert client.get("/v1/pipeline", headers=auth(OTHER)).status_code == 200
    # a keys file that cannot be read never leaves the API open
    missing = ApiSettings(api_keys_file=tmp_path / "nope")
    with pytest.raises(api.auth.ApiKeyError, match="cannot read"):
        load_keys(missing)
    assert "cannot read" in (bind_problem("127.0.0.1", missing) or "")


def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured key is compared, always, and always as 32-byte digests: neither which key matched nor
    the presented key's length changes the work done."""
    compared: list[tuple[int, int]] = []
    real = api.auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(api.auth.hmac, "compare_digest", counting)
    keys = [KEY, OTHER, "k3-" + "z" * 40]
    check = KeyChecker(keys)
    wrong_same_length = KEY[:-1] + ("0" if KEY[-1] != "0" else "1")
    for presented, expected in [(KEY, True), (keys[2], True), (wrong_same_length, False), ("short", False),
                                ("x" * 500, False), ("", False), (KEY.encode(), True)]:  # fmt: skip
        compared.clear()
        assert check(presented) is expected, presented
        assert compared == [(32, 32)] * len(keys), presented


def test_without_keys_the_cli_refuses_a_public_address(tmp_path: Path) -> None:
    assert bind_problem("127.0.0.1", ApiSettings()) is None
    assert bind_problem("0.0.0.0", ApiSettings(api_keys=KEY)) is None
    assert bind_problem("0.0.0.0", ApiSettings(api_allow_unauthenticated=True)) is None
    result = CliRunner().invoke(
        cli, ["api", "--host", "0.0.0.0", "--port", "1"], env={"EVALSTREAM_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "refusing to serve the API on 0.0.0.0 without API keys" in result.stderr
    assert "EVALSTREAM_API_ALLOW_UNAUTHENTICATED" in result.stderr


def test_with_the_override_it_listens_on_every_address_and_warns(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"EVALSTREAM_DATA_DIR": str(tmp_path / "data"), "EVALSTREAM_API_ALLOW_UNAUTHENTICATED": "true"}
    log = tmp_path / "api.log"
    proc = spawn_cli(["api", "--host", "0.0.0.0", "--port", str(port)], env, log)
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, 0.2, what="the API", alive=proc)
    finally:
        stop(proc)
    assert "no API keys" in log.read_text()


def test_a_request_cannot_write_to_the_database(tmp_path: Path) -> None:
    """Every request's cursor runs in a read-only transaction: no table, view or insert, whatever the SQL."""
    from api.deps import get_duckdb

    settings = ApiSettings(data_dir=tmp_path)
    cursors = get_duckdb(settings)
    cursor = next(cursors)
    assert cursor.execute("SELECT count(*) FROM scores").fetchone() == (0,)
    for statement in ("CREATE TABLE t (a INTEGER)", "CREATE OR REPLACE VIEW scores AS SELECT 1 AS a"):
        with pytest.raises(duckdb.Error, match="read-only"):
            cursor.execute(statement)
        cursor.execute("ROLLBACK")
        cursor.execute("BEGIN TRANSACTION READ ONLY")
    cursors.close()


def test_the_spec_documents_the_key_and_each_answer_a_route_gives(client: TestClient) -> None:
    """With keys, the spec has a bearer scheme that every operation but the public ones requires, each such
    operation documents its 401, and what a route answers when refused or not found matches the spec's shapes."""
    spec = client.get("/openapi.json", headers=auth(KEY)).json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": "an API key: Authorization: Bearer <key>",
    }  # fmt: skip
    protected = public = 0
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if api.auth.is_public(path):
                assert "security" not in operation and "401" not in operation["responses"], path
                public += 1
            else:
                assert operation["security"] == [{"apiKey": []}], path
                assert operation["responses"]["401"]["description"] == "Missing or wrong API key", path
                protected += 1
    assert public >= 1 and "security" not in spec["paths"]["/health"]["get"] and protected >= 11
    refused = client.get("/v1/pipeline").json()
    assert set(refused) == set(spec["components"]["schemas"]["Problem"]["properties"]) == {"detail"}
    for path, probe in (
        ("/v1/alerts/{alert_id}", "/v1/alerts/nope"),
        ("/v1/clusters/{cluster_id}", "/v1/clusters/c-1"),
    ):
        assert spec["paths"][path]["get"]["responses"]["404"]["description"] == "No such id", path
        answer = client.get(probe, headers=auth(KEY))
        assert answer.status_code == 404 and set(answer.json()) == {"detail"}, (probe, answer.text)


def test_without_keys_the_spec_asks_for_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSTREAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EVALSTREAM_API_KEYS", raising=False)
    api_settings.cache_clear()
    with TestClient(create_app()) as open_client:
        spec = open_client.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    assert not [p for p, ops in spec["paths"].items() for op in ops.values() if "401" in op["responses"]]
