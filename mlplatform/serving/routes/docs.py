"""The interactive API docs (``/docs``, ``/redoc``): off unless ``MLPLATFORM_SERVING_DOCS``.

Swagger UI and ReDoc are not part of the package; FastAPI's pages load them from the jsDelivr
CDN, so a token typed into "Authorize" would be within reach of that script. They are therefore
off by default (``/openapi.json`` is always served, for any local viewer). When turned on, the
pages carry a Content-Security-Policy that allows scripts only from that CDN plus the page's own
inline script (by hash), and requests only to this origin.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from mlplatform.serving.auth import Public

CDN = "https://cdn.jsdelivr.net"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def with_csp(page: HTMLResponse) -> HTMLResponse:
    """The page with a CSP allowing the CDN's scripts and styles and its own inline scripts."""
    body = bytes(page.body).decode("utf-8")
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in _INLINE_SCRIPT.findall(body)
    )
    csp = (
        f"default-src 'none'; script-src {CDN} {hashes}; style-src {CDN} 'unsafe-inline'; "
        f"font-src {CDN} data:; img-src 'self' data:; connect-src 'self'; worker-src blob:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return HTMLResponse(body, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})


router = APIRouter(dependencies=[Public], include_in_schema=False)


def _title(request: Request) -> str:
    return f"{request.app.title} - docs"


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI (from the jsDelivr CDN) for /openapi.json."""
    return with_csp(get_swagger_ui_html(openapi_url="/openapi.json", title=_title(request)))


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    """ReDoc (from the jsDelivr CDN) for /openapi.json."""
    return with_csp(
        get_redoc_html(openapi_url="/openapi.json", title=_title(request), with_google_fonts=False)
    )
