"""The dashboard at ``/``: one page, its script and style, and Plotly's own JavaScript, all served by the API.

Nothing comes from a CDN (users run this in closed networks): the charts use the ``plotly.min.js`` that ships
inside the ``plotly`` Python package, read from the installed package's folder without importing it. The page
holds no data; its script reads the ``/v1`` answers with the filters in the page's URL, so a link shares the view.
When the API needs a key, the script asks for it once and keeps it in the browser's local storage.

Adding a panel is one ``panel({...})`` call in ``api/static/dashboard.js``: a title, what to load from the API
and how to draw it.

Example::

    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> app = FastAPI()
    >>> app.include_router(router)
    >>> client = TestClient(app)
    >>> page = client.get("/")
    >>> page.status_code, "/static/plotly.min.js" in page.text, "cdn" in page.text.lower()
    (200, True, False)
    >>> client.get("/static/plotly.min.js").headers["content-type"]
    'text/javascript; charset=utf-8'
    >>> client.get("/static/../settings.py").status_code
    404
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}  # the only files served from STATIC


@cache
def plotly_js() -> Path:
    """The ``plotly.min.js`` bundled in the installed ``plotly`` package."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is not installed: pip install plotly")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


@router.get("/")
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/static/plotly.min.js")
def plotly() -> FileResponse:
    return FileResponse(plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail="not found")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})
