"""``GET /metrics``: the API's own Prometheus metrics (text exposition), behind the API key like every route.

- ``evalstream_api_requests_total{method,route,status}``: requests by route *template* (``/v1/alerts/{alert_id}``,
  never the id itself, so the labels stay few; ``unmatched`` for paths no route serves);
- ``evalstream_api_request_duration_seconds{method,route}``: how long the answers took (histogram).

Requests refused for a missing key are counted too, under the route they asked for. Each app has its own
registry (:func:`install`), so several apps (tests) in one process never share counts.

Example::

    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> app = FastAPI()
    >>> install(app)
    >>> client = TestClient(app)
    >>> client.get("/nope").status_code
    404
    >>> [line for line in client.get("/metrics").text.splitlines() if line.startswith("evalstream_api_requests_total")]
    ['evalstream_api_requests_total{method="GET",route="unmatched",status="404"} 1.0']
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

router = APIRouter(tags=["operations"])

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ApiMetrics:
    """The API's request counter and latency histogram, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "evalstream_api_requests", "Requests by route template and status", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "evalstream_api_request_duration_seconds", "Time to answer, by route template", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip


def route_template(app: FastAPI, scope: Scope) -> str:
    """The path template of the route that served ``scope`` (the router left it in the scope), or would have served
    it (a request refused before routing, for a missing key); ``unmatched`` when none does."""
    routed = scope.get("route")
    if getattr(routed, "path", None):
        return str(routed.path)  # type: ignore[union-attr]
    for context in iter_route_contexts(app.routes):  # the routes of the included routers too
        route = context.original_route
        if route.matches(scope)[0] == Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class MetricsMiddleware:
    """Counts and times every HTTP request (outermost, so refused ones count as well)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, root: FastAPI) -> None:
        self.app = app
        self.metrics = metrics
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the answer started is a 500 to the client

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_template(self.root, scope)
            method = scope["method"] if scope["method"] in METHODS else "other"  # a client may send any token
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def install(app: FastAPI) -> None:
    """Count ``app``'s requests and serve them at ``/metrics`` (call after every other middleware: it goes
    outermost)."""
    metrics = ApiMetrics()
    app.state.prometheus = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics, root=app)
    app.include_router(router)


def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.prometheus
    return metrics


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def prometheus_metrics(metrics: Annotated[ApiMetrics, Depends(get_metrics)]) -> Response:
    """The API's request counts and latencies in Prometheus' text format (needs the API key when keys are set)."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
