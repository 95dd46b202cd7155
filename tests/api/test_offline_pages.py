"""Every HTML page the API serves works offline: it references no other host, and every asset it needs is served.

Teams run evalstream in closed networks; a page that loads its JavaScript from a CDN is a blank page there.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.testclient import TestClient

from api.app import create_app

CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)""")


class References(HTMLParser):
    """Every ``src`` and ``href`` of a page, and every ``url(...)`` in its inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]
        self.found += [m for name, value in attrs if name == "style" and value for m in CSS_URL.findall(value)]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.found += CSS_URL.findall(data)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.found


def foreign(refs: list[str], host: str) -> list[str]:
    """The references that would leave ``host`` (``data:`` and same-host ones are fine)."""
    out = []
    for ref in refs:
        parts = urlsplit(ref)
        if ref.startswith("//") or (parts.scheme in ("http", "https") and parts.netloc != host):
            out.append(ref)
    return out


def html_pages(client: TestClient) -> dict[str, str]:
    """Every GET route without path parameters that answers with HTML (its content type decides), and its page."""
    app = client.app
    pages = {}
    for route in app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        methods = getattr(route, "methods", None) or set()
        if "GET" not in methods or "{" in path:
            continue
        resp = client.get(path)
        if resp.status_code == 200 and resp.headers["content-type"].startswith("text/html"):
            pages[path] = resp.text
    return pages


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


def test_the_docs_pages_are_among_the_html_pages(client: TestClient) -> None:
    assert {"/docs", "/redoc"} <= html_pages(client).keys()


def test_no_page_references_another_host(client: TestClient) -> None:
    host = urlsplit(str(client.base_url)).netloc
    found = {path: foreign(references(html), host) for path, html in html_pages(client).items()}
    assert {path: refs for path, refs in found.items() if refs} == {}


def test_every_asset_a_page_needs_is_served_by_the_api(client: TestClient) -> None:
    host = urlsplit(str(client.base_url)).netloc
    pages = html_pages(client)
    checked = set()
    for path, html in pages.items():
        for ref in [r for r in references(html) if not r.startswith("data:")]:
            checked.add(ref.rsplit("/", 1)[-1])
            url = urljoin(f"http://{host}{path}", ref)
            resp = client.get(url)
            assert resp.status_code == 200 and resp.content, f"{path} needs {ref}: {resp.status_code}"
            if url.endswith(".css"):
                assert foreign(CSS_URL.findall(resp.text), host) == [], f"{ref} loads from another host"
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"} <= checked


def test_swagger_ui_validator_badge_is_off(client: TestClient) -> None:
    """Swagger UI's default validator badge is an image from validator.swagger.io."""
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_check_catches_fastapis_default_cdn_pages() -> None:
    """The same check on FastAPI's default pages (what /docs served before) finds the CDN and favicon hosts."""
    default = get_swagger_ui_html(openapi_url="/openapi.json", title="t").body.decode()
    redoc = get_redoc_html(openapi_url="/openapi.json", title="t").body.decode()
    hosts = {urlsplit(ref).netloc for ref in foreign(references(default) + references(redoc), "testserver")}
    assert {"cdn.jsdelivr.net", "fastapi.tiangolo.com", "fonts.googleapis.com"} <= hosts
    styled = '<div style="background: url(https://cdn.example/x.png)"></div><style>a{background:url("//x/y")}</style>'
    assert foreign(references(styled), "testserver") == ["https://cdn.example/x.png", "//x/y"]
