"""The evalstream API: FastAPI app factory (``uvicorn --factory api.app:create_app``).

Example::

    >>> from fastapi.testclient import TestClient
    >>> TestClient(create_app()).get("/health").json()["status"]
    'ok'
"""

from __future__ import annotations

from fastapi import FastAPI

from api.routers import health, metrics


def create_app() -> FastAPI:
    app = FastAPI(
        title="evalstream",
        summary="Online evaluation of LLM applications from Kafka traffic",
        version="0.1.0",
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    return app
