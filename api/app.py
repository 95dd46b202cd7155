"""The evalstream API: FastAPI app factory (``uvicorn --factory api.app:create_app``).

Every page it serves works without a network: the ``/docs`` (Swagger UI) and ``/redoc`` pages load their
JavaScript, CSS and favicon from the API itself (the assets ship in the ``fastapi-offline`` package), never
from a CDN, and Swagger UI's validator badge (an image from validator.swagger.io) is off.

Example::

    >>> from fastapi.testclient import TestClient
    >>> client = TestClient(create_app())
    >>> client.get("/health").json()["status"]
    'ok'
    >>> "cdn.jsdelivr.net" in client.get("/docs").text
    False
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api.auth import protect
from api.responses import INVALID_REQUEST
from api.routers import alerts, clusters, compare, components, dashboard, drift, health, judges, metrics, traces
from api.routers import pipeline as pipeline_status
from api.routers import prometheus as prometheus_metrics
from api.settings import get_settings

DOCS_ASSETS_URL = "/static-offline-docs"  # Swagger UI, ReDoc and the favicon, served from the package


def create_app() -> FastAPI:
    app = FastAPIOffline(
        title="evalstream",
        summary="Online evaluation of LLM applications from Kafka traffic",
        version="0.1.0",
        static_url=DOCS_ASSETS_URL,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.include_router(health.router)
    for queries in (metrics, compare, drift, clusters, traces, components, judges, alerts):
        app.include_router(queries.router, responses=INVALID_REQUEST)
    app.include_router(dashboard.router)
    app.include_router(pipeline_status.router)
    protect(app, get_settings())  # API keys (api/auth.py): every path but /health, / and /static/* needs one
    prometheus_metrics.install(app)  # /metrics; outermost, so requests refused for a missing key count too
    return app
