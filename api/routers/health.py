"""``GET /health``: liveness, plus where the API reads from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(settings: SettingsDep) -> dict[str, Any]:
    return {"status": "ok", "data_dir": str(settings.data_dir)}
