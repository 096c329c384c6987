"""The dashboard and the API docs: static pages whose scripts and styles the service serves itself."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).resolve().parents[1] / "static"
# No inline script or style, nothing from elsewhere, never framed. A report opens in a sandboxed frame that
# inherits this policy: its one stylesheet is allowed by its hash (the report's own page sets its own policy).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' {report_css}; img-src 'self' data: blob:; "
       "frame-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
router = APIRouter(include_in_schema=False)


@cache
def headers() -> dict[str, str]:
    from pipeline.report_html import CSS

    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    return {"cache-control": "no-cache", "content-security-policy": CSP.format(report_css=f"'sha256-{digest}'")}


@router.get("/")
def dashboard():
    """The jobs dashboard (it calls the API with the key the user enters)."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=headers())


@router.get("/docs")
def docs():
    """Swagger UI, from the swagger-ui-bundle package's files (no CDN)."""
    return HTMLResponse((STATIC / "docs.html").read_text(encoding="utf-8"), headers=headers())
