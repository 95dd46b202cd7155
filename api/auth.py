"""API keys: with ``EVALSTREAM_API_KEYS`` (comma-separated) or ``EVALSTREAM_API_KEYS_FILE`` (one key a line, ``#``
starts a comment) set, every request needs ``Authorization: Bearer <key>``, except :data:`PUBLIC_PATHS`.

The public paths hold no data: ``/health`` (for load balancers and probes), and the dashboard page ``/`` with its
own assets under ``/static/`` (its JavaScript asks for the key once and sends it with each ``/v1`` call).
Everything else needs a key, ``/metrics``, ``/docs``, ``/redoc`` and ``/openapi.json`` included: the schema names
every route and parameter, and the exempt list stays as short as it can be. A request without a valid key gets
401 with ``WWW-Authenticate: Bearer``, before any route runs, also on paths that do not exist (a caller without a
key learns nothing about the routes).

A key is checked against every configured key, always all of them, comparing SHA-256 digests with
:func:`hmac.compare_digest`: the time taken depends neither on which key matched nor on the given key's length.

Without keys the API answers anyone who can reach it, so ``evalstream api`` refuses a non-loopback address unless
``EVALSTREAM_API_ALLOW_UNAUTHENTICATED=true`` (:func:`bind_problem`), and the app logs a warning at start-up.

Example::

    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> app = FastAPI()
    >>> @app.get("/v1/x")
    ... def x() -> int:
    ...     return 1
    >>> protect(app, ApiSettings(api_keys="k-one,k-two"))
    True
    >>> client = TestClient(app)
    >>> r = client.get("/v1/x")
    >>> r.status_code, r.headers["www-authenticate"]
    (401, 'Bearer realm="evalstream"')
    >>> client.get("/v1/x", headers={"Authorization": "Bearer k-two"}).json()
    1
    >>> bind_problem("0.0.0.0", ApiSettings()) is not None, bind_problem("127.0.0.1", ApiSettings())
    (True, None)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.responses import Problem
from api.settings import ApiSettings

log = logging.getLogger("evalstream.api")

# Open without a key: the probe, the dashboard page and its assets (``/static/*``: everything below ``/static/``).
PUBLIC_PATHS = ("/health", "/", "/static/*")
_EXACT = frozenset(p for p in PUBLIC_PATHS if not p.endswith("*"))
_PREFIXES = tuple(p[:-1] for p in PUBLIC_PATHS if p.endswith("*"))


class ApiKeyError(ValueError):
    """The keys file cannot be read."""


def is_public(path: str) -> bool:
    """Whether ``path`` is open without a key.

    >>> [is_public(p) for p in ("/health", "/", "/static/app.js", "/static-offline-docs/x.js", "/v1/alerts")]
    [True, True, True, False, False]
    """
    return path in _EXACT or path.startswith(_PREFIXES)


def parse_keys(text: str, separator: str | None = None) -> list[str]:
    """Keys from a comma-separated value (``separator=","``) or a keys file (one a line, ``#`` starts a comment).

    >>> parse_keys("a1, b2,,")
    ['a1', 'b2']
    >>> parse_keys("# ops team\\nk-ops   # rotated 2026-11\\n\\nk-ci\\n", separator="\\n")
    ['k-ops', 'k-ci']
    """
    if separator == "\n":
        return [k for line in text.splitlines() if (k := line.split("#", 1)[0].strip())]
    return [k.strip() for k in text.split(separator or ",") if k.strip()]


def load_keys(settings: ApiSettings) -> tuple[str, ...]:
    """Every configured key (both settings may be set; duplicates kept once); raises ApiKeyError for a keys file
    that cannot be read, so a typo in its path never silently leaves the API open."""
    keys = parse_keys(settings.api_keys or "")
    if settings.api_keys_file is not None:
        try:
            keys += parse_keys(Path(settings.api_keys_file).read_text("utf-8"), separator="\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ApiKeyError(f"EVALSTREAM_API_KEYS_FILE: cannot read {settings.api_keys_file}: {exc}") from exc
    return tuple(dict.fromkeys(keys))


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


class KeyChecker:
    """Compares a presented key with every configured key, in time independent of which one matches and of the
    presented key's length (SHA-256 digests of equal length, :func:`hmac.compare_digest` on each, no early exit).

    >>> check = KeyChecker(["k-one", "k-two"])
    >>> check("k-two"), check("k-twO"), check("k"), check("")
    (True, False, False, False)
    """

    def __init__(self, keys: Sequence[str]) -> None:
        self._digests = tuple(_digest(k) for k in keys)

    def __call__(self, presented: str | bytes) -> bool:
        given = _digest(presented)
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(given, digest)
        return found


def route_path(scope: Scope) -> str:
    """The path as the routes see it: without the ``root_path`` a proxy serves the API under (the server's setting,
    never the client's)."""
    path, root = str(scope["path"]), str(scope.get("root_path") or "")
    return (path[len(root) :] or "/") if root and path.startswith(root) else path


def bearer_token(scope: Scope) -> bytes | None:
    """The token of the request's ``Authorization: Bearer`` header (the scheme in any case), else None."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
    return None


class ApiKeyMiddleware:
    """401 for every request outside :data:`PUBLIC_PATHS` without a valid key (an ASGI middleware: it guards the
    docs, ``/metrics`` and unknown paths as well as the routers)."""

    def __init__(self, app: ASGIApp, checker: KeyChecker) -> None:
        self.app = app
        self.checker = checker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(route_path(scope)):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is not None and self.checker(token):
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer realm="evalstream"' + (', error="invalid_token"' if token is not None else "")
        detail = "invalid API key" if token is not None else "missing API key: send Authorization: Bearer <key>"
        response = JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)


def protect(app: FastAPI, settings: ApiSettings) -> bool:
    """Require a key on ``app`` when keys are configured (True); else log that it is open and return False."""
    keys = load_keys(settings)
    if not keys:
        log.warning(
            "no API keys (EVALSTREAM_API_KEYS / EVALSTREAM_API_KEYS_FILE): every endpoint answers without one; "
            "`evalstream api` listens on loopback only unless EVALSTREAM_API_ALLOW_UNAUTHENTICATED=true"
        )
        return False
    app.add_middleware(ApiKeyMiddleware, checker=KeyChecker(keys))
    document_keys(app)
    return True


def document_keys(app: FastAPI) -> None:
    """Say in ``app``'s OpenAPI spec what the middleware enforces: a bearer scheme, required by every operation
    outside :data:`PUBLIC_PATHS`, each of which may answer 401."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        components = spec.setdefault("components", {})
        components.setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http", "scheme": "bearer", "description": "an API key: Authorization: Bearer <key>",
        }  # fmt: skip
        components.setdefault("schemas", {})["Problem"] = Problem.model_json_schema()
        unauthorized = {
            "description": "Missing or wrong API key",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for path, operations in spec.get("paths", {}).items():
            if is_public(path):
                continue
            for operation in operations.values():
                operation["security"] = [{"apiKey": []}]
                operation.setdefault("responses", {})["401"] = unauthorized
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::", "10.0.0.5", "api.example")]
    [True, True, True, False, False, False, False]
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def bind_problem(host: str, settings: ApiSettings) -> str | None:
    """Why the API must not listen on ``host`` with these settings (a non-loopback address without keys, or an
    unreadable keys file), or None."""
    try:
        keys = load_keys(settings)
    except ApiKeyError as exc:
        return str(exc)
    if keys or is_loopback(host) or settings.api_allow_unauthenticated:
        return None
    return (
        f"refusing to serve the API on {host} without API keys: anyone who reaches it could read every event; "
        "set EVALSTREAM_API_KEYS or EVALSTREAM_API_KEYS_FILE, or EVALSTREAM_API_ALLOW_UNAUTHENTICATED=true "
        "(e.g. behind a proxy that authenticates)"
    )
