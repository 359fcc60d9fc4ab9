"""Shadow candidates (approvers attach and detach) and the review page's "since promotion"
panel (readers): ``mlplatform.shadow`` stores the attachment, ``serving.shadow`` uses it."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from mlplatform.serving import since_promotion as panel
from mlplatform.serving.auth import Approver, Reader
from mlplatform.serving.deps import CatalogDep, LedgerDep, ProjectDep, SettingsDep
from mlplatform.serving.shadow import ShadowBundles
from mlplatform.shadow import attach_shadow, detach_shadow, read_shadow

log = logging.getLogger(__name__)
router = APIRouter(tags=["review"])


async def _shadow(request: Request) -> ShadowBundles:
    return request.app.state.shadow


ShadowDep = Annotated[ShadowBundles, Depends(_shadow)]


class ShadowOut(BaseModel):
    project: str
    bundle_id: str | None
    actor: str | None = None
    attached_at: str | None = None
    error: str | None = None  # why serving does not use it (verification)


@router.post(
    "/v1/projects/{project}/candidates/{bundle_id}/shadow",
    response_model=ShadowOut,
    status_code=201,
)
def attach(
    project: str,
    bundle_id: str,
    who: Approver,
    spec: ProjectDep,
    catalog: CatalogDep,
    ledger: LedgerDep,
    shadows: ShadowDep,
    settings: SettingsDep,
) -> ShadowOut:
    """Run a published candidate in shadow: it predicts logged requests beside production,
    off the response path; its predictions are logged, never returned."""
    if bundle_id not in {m["bundle_id"] for m in catalog.of_project(project)}:
        raise HTTPException(404, f"bundle {bundle_id} is not a published bundle of {project!r}")
    head = ledger.production(project)
    if head is not None and head.to_bundle == bundle_id:
        raise HTTPException(400, f"bundle {bundle_id} is production already; attach a candidate")
    attach_shadow(settings.home, project, bundle_id, who.name)
    state = shadows.state(project)
    if state.error is not None:
        detach_shadow(settings.home, project)
        raise HTTPException(400, state.error)
    log.info("%s: %s attached bundle %s in shadow", project, who.name, bundle_id)
    return _out(project, shadows)


@router.delete("/v1/projects/{project}/shadow", response_model=ShadowOut)
def detach(
    project: str, who: Approver, spec: ProjectDep, shadows: ShadowDep, settings: SettingsDep
) -> ShadowOut:
    """Stop the project's shadow (the log keeps what it recorded)."""
    if detach_shadow(settings.home, project):
        log.info("%s: %s detached the shadow bundle", project, who.name)
    return _out(project, shadows)


@router.get("/v1/projects/{project}/shadow", response_model=ShadowOut)
def current(project: str, who: Reader, spec: ProjectDep, shadows: ShadowDep) -> ShadowOut:
    """The project's shadow candidate, if any, and whether serving uses it."""
    return _out(project, shadows)


def _out(project: str, shadows: ShadowBundles) -> ShadowOut:
    state = shadows.state(project)
    found = state.attachment
    if found is None:
        return ShadowOut(project=project, bundle_id=None)
    return ShadowOut(
        project=project,
        bundle_id=found.bundle_id,
        actor=found.actor,
        attached_at=found.attached_at,
        error=state.error,
    )


@router.get("/v1/projects/{project}/since-promotion", response_model=panel.SincePromotionOut)
async def since_promotion(
    project: str, who: Reader, spec: ProjectDep, ledger: LedgerDep, settings: SettingsDep
) -> panel.SincePromotionOut:
    """Since production was promoted: traffic, shadow agreement (prediction log), live drift
    and decay (the monitoring asset's daily summaries)."""
    history = await run_in_threadpool(ledger.history, project)
    head = history[-1] if history else None
    since = head.created_at if head is not None else dt.datetime.fromtimestamp(0, dt.UTC)
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    columns = await run_in_threadpool(panel.read_log, settings.prediction_log, project, since)
    attached = read_shadow(settings.home, project)
    shadow = (
        panel.shadow_agreement(columns, attached.bundle_id, spec.task == "regression")
        if attached is not None
        else None
    )
    return panel.SincePromotionOut(
        project=project,
        production=head.to_bundle if head is not None else None,
        promoted_at=head.created_at if head is not None else None,
        traffic=panel.traffic(columns),
        shadow=shadow,
        monitoring=panel.monitoring_days(settings.home, project, since),
    )
