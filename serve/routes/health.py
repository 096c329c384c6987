"""Liveness (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pipeline.version import __version__
from serve.models import Health

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "database down"}})
def healthz(request: Request):
    """Liveness and the database's health; no key needed."""
    try:
        request.app.state.store.ping()
    except Exception:  # noqa: BLE001
        return JSONResponse({"status": "degraded", "database": "unreachable", "version": __version__}, 503)
    return {"status": "ok", "database": "ok", "version": __version__}
