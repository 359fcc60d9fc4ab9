"""Projects and their bundles (readers): the project list, the production manifest (ETag),
verified, content-addressed downloads of bundle files."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from mlplatform.bundles.format import MANIFEST
from mlplatform.serving.auth import Reader
from mlplatform.serving.deps import (
    CatalogDep,
    ProductionBundleDep,
    ProductionDep,
    SettingsDep,
    SpecsDep,
    VerifiedDep,
)
from mlplatform.serving.schemas import InputSchemaOut, ProjectOut, ProjectsOut

IMMUTABLE = "public, max-age=31536000, immutable"
router = APIRouter()


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an ``If-None-Match`` header with one ETag."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


@router.get("/v1/projects", response_model=ProjectsOut, tags=["projects"])
def list_projects(who: Reader, specs: SpecsDep, production: ProductionDep) -> ProjectsOut:
    """Every project, its production bundle and the input schema predict accepts."""
    out = []
    for name, spec in specs.items():
        bundle = production.current(name)
        out.append(
            ProjectOut(
                name=name,
                description=spec.description,
                task=spec.task,
                target=spec.target,
                production_bundle_id=bundle.bundle_id if bundle else None,
                input_schema=InputSchemaOut.from_schema(bundle.schema, bundle.classes)
                if bundle
                else None,
            )
        )
    return ProjectsOut(projects=out)


@router.get(
    "/v1/projects/{project}/production",
    response_model=dict[str, Any],
    tags=["projects"],
    responses={304: {"description": "Not modified (If-None-Match matched the ETag)"}},
)
def production_manifest(request: Request, who: Reader, bundle: ProductionBundleDep) -> Response:
    """The manifest of the bundle served now; ``ETag`` is its quoted bundle id."""
    etag = f'"{bundle.bundle_id}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return JSONResponse(bundle.manifest, headers=headers)


@router.get(
    "/v1/bundles/{bundle_id}/files/{path:path}",
    response_class=FileResponse,
    response_model=None,
    tags=["bundles"],
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        304: {"description": "Not modified"},
    },
)
def bundle_file(
    bundle_id: str,
    path: str,
    request: Request,
    who: Reader,
    catalog: CatalogDep,
    verified: VerifiedDep,
    settings: SettingsDep,
) -> Response:
    """A file of a published bundle (or its manifest.json); immutable, content-addressed."""
    manifest = catalog.get(bundle_id)
    if manifest is None:
        raise HTTPException(404, f"unknown bundle {bundle_id!r}")
    files: dict[str, str] = manifest.get("files", {})
    if path != MANIFEST and path not in files:
        raise HTTPException(404, f"{path!r} is not a file of bundle {bundle_id}")
    root = (settings.bundles_dir / bundle_id).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404, f"{path!r} is not a file of bundle {bundle_id}")
    refusal = verified.refusal(manifest)
    if refusal is not None:
        raise HTTPException(409, refusal)
    etag = f'"{files[path]}"' if path != MANIFEST else f'"{bundle_id}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(target, headers=headers, media_type="application/octet-stream")
