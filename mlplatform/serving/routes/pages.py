"""The expert review page and the evaluation reports it shows.

``GET /review`` and ``GET /review/{project}`` return one static page (HTML, CSS and a small
inline script from ``serving/templates``); they carry no data. The reviewer pastes a token
into the page, which keeps it in ``sessionStorage`` (never in a URL) and calls the JSON API
with ``Authorization: Bearer``: ``GET /v1/projects/{p}/candidates``, each bundle's
``manifest.json`` (training manifest), ``GET /v1/projects/{p}/reports/{cutoff}`` (the
evaluation report, shown in a sandboxed frame) and ``POST .../approve`` or ``.../reject``.
The page groups bundles by cutoff (each cutoff has its own holdout): metrics are compared and
the best highlighted only within one cutoff, and production only in its own cutoff's group.

The page is served with a Content-Security-Policy that allows only its own inline script
(by hash), requests to this origin, and inline images/styles (the report's plots are
``data:`` PNGs), so it loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from mlplatform.serving.auth import Public, Reader
from mlplatform.serving.deps import SettingsDep, SpecsDep
from mlplatform.spec import CLASSIFICATION_METRICS, LOWER_IS_BETTER, REGRESSION_METRICS

CUTOFF_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_CUTOFF = re.compile(CUTOFF_PATTERN)
TEMPLATES = files("mlplatform.serving") / "templates"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# A report opened on its own: no scripts, no requests, nothing but its inline CSS and plots.
REPORT_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text("utf-8")


@cache
def review_page() -> tuple[bytes, str]:
    """The review page and its Content-Security-Policy (built once)."""
    script = _template("review.js")
    style = _template("review.css")
    config = {
        "lower_is_better": sorted(LOWER_IS_BETTER),
        "metric_order": [*CLASSIFICATION_METRICS, *REGRESSION_METRICS],
    }
    # JSON inside <script type="application/json">: "<" escaped so it cannot end the element.
    data = json.dumps(config).replace("<", "\\u003c")
    assert "</script" not in script.lower() and "</style" not in style.lower()
    page = (
        _template("review.html")
        .replace("{{ style }}", style)
        .replace("{{ config }}", data)
        .replace("{{ script }}", script)
    )
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        f"default-src 'none'; script-src 'sha256-{digest}'; connect-src 'self'; "
        "style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return page.encode("utf-8"), csp


def _page_response() -> HTMLResponse:
    body, csp = review_page()
    headers = {**COMMON_HEADERS, "Content-Security-Policy": csp, "X-Frame-Options": "DENY"}
    return HTMLResponse(body, headers=headers)


router = APIRouter()


@router.get("/review", response_class=HTMLResponse, dependencies=[Public], include_in_schema=False)
def review_index() -> HTMLResponse:
    """The review page: pick a project (needs a token to list them)."""
    return _page_response()


@router.get(
    "/review/{project}",
    response_class=HTMLResponse,
    dependencies=[Public],
    include_in_schema=False,
)
def review_project(project: str) -> HTMLResponse:
    """The review page of one project; the page's script fetches the data with a token."""
    return _page_response()


@router.get(
    "/v1/projects/{project}/reports/{cutoff}",
    response_class=HTMLResponse,
    tags=["review"],
    responses={
        200: {"content": {"text/html": {}}, "description": "The evaluation report"},
        404: {"description": "Unknown project, or no report for this cutoff"},
    },
)
def evaluation_report(
    project: str,
    cutoff: Annotated[str, PathParam(pattern=CUTOFF_PATTERN, description="YYYY-MM-DD")],
    who: Reader,
    specs: SpecsDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """The evaluation report (self-contained HTML with its plots) of one cutoff."""
    if project not in specs:
        raise HTTPException(404, f"unknown project {project!r}")
    if not _CUTOFF.match(cutoff):  # also checked by the path pattern
        raise HTTPException(404, f"no evaluation report for cutoff {cutoff!r}")
    root = settings.reports_dir.resolve()
    path = (settings.reports_dir / project / f"{cutoff}.html").resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, f"no evaluation report of {project!r} for cutoff {cutoff}")
    try:
        body = path.read_bytes()
    except OSError:
        raise HTTPException(
            404, f"no evaluation report of {project!r} for cutoff {cutoff}"
        ) from None
    headers = {
        **COMMON_HEADERS,
        "Cache-Control": "private, no-cache",
        "Content-Security-Policy": REPORT_CSP,
    }
    return HTMLResponse(body, headers=headers)


__all__ = ["CUTOFF_PATTERN", "review_page", "router"]
