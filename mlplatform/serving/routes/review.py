"""Review (readers see, approvers act): candidates against production, the promotion
history, approvals and rejections, and rollbacks (``promotion.service``, as the CLI)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException

from mlplatform.promotion import service as promotion
from mlplatform.serving.auth import Approver, Reader
from mlplatform.serving.bodies import (
    DECISION_BODY_BYTES,
    DecisionBody,
    RollbackBody,
    request_body_doc,
)
from mlplatform.serving.deps import (
    CatalogDep,
    LedgerDep,
    ProductionDep,
    ProjectDep,
    RegistryDep,
    SettingsDep,
)
from mlplatform.serving.schemas import (
    BundleSummary,
    CandidateOut,
    CandidatesOut,
    DecisionIn,
    DecisionOut,
    PromotionOut,
    PromotionsOut,
    RollbackIn,
)
from mlplatform.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["review"])
DECISION_DOC = {"requestBody": request_body_doc(DecisionIn, DECISION_BODY_BYTES)}
ROLLBACK_DOC = {"requestBody": request_body_doc(RollbackIn, DECISION_BODY_BYTES)}


@router.get("/v1/projects/{project}/candidates", response_model=CandidatesOut)
def candidates(
    project: str, who: Reader, spec: ProjectDep, ledger: LedgerDep, catalog: CatalogDep
) -> CandidatesOut:
    """Published bundles that are not production, their decisions, metrics vs production."""
    pointer = ledger.production(project)
    current = pointer.to_bundle if pointer is not None else None
    manifests = catalog.of_project(project)
    prod_manifest = next((m for m in manifests if m["bundle_id"] == current), None)
    prod = BundleSummary.from_manifest(prod_manifest) if prod_manifest else None
    decisions: dict[str, list[DecisionOut]] = {}
    for d in ledger.decisions(project):
        decisions.setdefault(d.bundle_id, []).append(DecisionOut.model_validate(d))
    before = {p.to_bundle for p in ledger.history(project)}
    out = [
        CandidateOut.build(m, prod, decisions.get(m["bundle_id"], []), m["bundle_id"] in before)
        for m in manifests
        if m["bundle_id"] != current
    ]
    return CandidatesOut(project=project, production=prod, candidates=out)


@router.get("/v1/projects/{project}/promotions", response_model=PromotionsOut)
def promotions(project: str, who: Reader, spec: ProjectDep, ledger: LedgerDep) -> PromotionsOut:
    """The append-only promotion history, oldest first."""
    rows = [PromotionOut.model_validate(p) for p in ledger.history(project)]
    return PromotionsOut(
        project=project,
        production=rows[-1].to_bundle if rows else None,
        promotions=rows,
    )


def refused(exc: promotion.PromotionRefused, settings: Settings) -> HTTPException:
    """The HTTP answer to a refused decision or rollback (paths shown relative to bundles)."""
    status = 404 if isinstance(exc, promotion.NotPublished) else 400
    status = 409 if isinstance(exc, promotion.Conflict) else status
    return HTTPException(status, str(exc).replace(str(settings.bundles_dir), "bundles"))


def decide(
    bundle_id: str,
    body: DecisionIn,
    who: Approver,
    verdict: str,
    spec: ProjectDep,
    ledger: LedgerDep,
    settings: SettingsDep,
) -> DecisionOut:
    """Record an approval or rejection of a published candidate."""
    project = spec.name
    try:
        decision = promotion.decide(
            ledger, settings.bundles_dir, project, bundle_id, verdict, who.name, body.comment
        )
    except promotion.PromotionRefused as exc:
        raise refused(exc, settings) from None
    log.info("%s: %s recorded %s of bundle %s", project, who.name, verdict, bundle_id)
    return DecisionOut.model_validate(decision)


@router.post(
    "/v1/projects/{project}/candidates/{bundle_id}/approve",
    response_model=DecisionOut,
    status_code=201,
    openapi_extra=DECISION_DOC,
)
def approve(
    project: str,
    bundle_id: str,
    who: Approver,
    body: DecisionBody,
    spec: ProjectDep,
    ledger: LedgerDep,
    settings: SettingsDep,
) -> DecisionOut:
    """Approve a candidate; the platform's promotion sensor acts on it."""
    return decide(bundle_id, body, who, "approve", spec, ledger, settings)


@router.post(
    "/v1/projects/{project}/candidates/{bundle_id}/reject",
    response_model=DecisionOut,
    status_code=201,
    openapi_extra=DECISION_DOC,
)
def reject(
    project: str,
    bundle_id: str,
    who: Approver,
    body: DecisionBody,
    spec: ProjectDep,
    ledger: LedgerDep,
    settings: SettingsDep,
) -> DecisionOut:
    """Reject a candidate."""
    return decide(bundle_id, body, who, "reject", spec, ledger, settings)


@router.post(
    "/v1/projects/{project}/rollback",
    response_model=PromotionOut,
    status_code=201,
    openapi_extra=ROLLBACK_DOC,
)
def rollback(
    who: Approver,
    body: RollbackBody,
    spec: ProjectDep,
    ledger: LedgerDep,
    registry: RegistryDep,
    production: ProductionDep,
    settings: SettingsDep,
) -> PromotionOut:
    """Point production back at an earlier production bundle (verified first); instant."""
    project = spec.name
    try:
        moved = promotion.rollback(
            ledger,
            registry,
            project,
            settings.bundles_dir,
            who.name,
            body.reason,
            to=body.to_bundle,
        )
    except promotion.PromotionRefused as exc:
        raise refused(exc, settings) from None
    row = moved.row
    log.info("%s: %s rolled back %s -> %s", project, who.name, row.from_bundle, row.to_bundle)
    production.refresh(project)
    if moved.alias_error is not None:
        log.warning("%s: MLflow alias not moved: %s", project, moved.alias_error)
    return PromotionOut.model_validate(row)
