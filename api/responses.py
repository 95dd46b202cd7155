"""Error answers as the OpenAPI spec documents them: 401 (a missing or wrong key), 404, 422.

Example::

    >>> Problem(detail="no alert a1").model_dump()
    {'detail': 'no alert a1'}
    >>> list(NOT_FOUND), list(INVALID_REQUEST)
    ([404], [422])
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Problem(BaseModel):
    """A 401 or 404 answer: what was missing or not found."""

    detail: str


class InvalidRequest(BaseModel):
    """A 422 answer: FastAPI's list of the parameters that failed validation, or the message of a route's own
    check (``since`` not before ``until``, an unknown metric or signal, too many points)."""

    detail: str | list[dict[str, Any]]


# The spec's 422 for every route with parameters: FastAPI would document only its own list of errors
INVALID_REQUEST: dict[int | str, dict[str, Any]] = {422: {"model": InvalidRequest, "description": "Invalid request"}}
# The routes that look one thing up by its id
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such id"}}
