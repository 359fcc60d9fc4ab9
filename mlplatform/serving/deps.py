"""FastAPI dependencies of the routes: the app's parts (``app.state``), a project, its bundle.

``create_app`` puts the parts on ``app.state``; a route asks for what it needs by type
(``LedgerDep``, ``ProjectDep``, ``ProductionBundleDep`` ...). They are ``async`` because they
only read memory, so FastAPI runs them on the event loop. A route lists its auth dependency
(and its body) before ``ProjectDep``/``ProductionBundleDep``, so the token is checked first.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from mlplatform.bundles.catalog import BundleCatalog
from mlplatform.bundles.format import Bundle
from mlplatform.ledger import Ledger
from mlplatform.promotion.alias import Tracker
from mlplatform.serving.log_writer import PredictionLog
from mlplatform.serving.metrics import ServingMetrics
from mlplatform.serving.predict import Compiled
from mlplatform.serving.production import ProductionService, VerifiedFiles
from mlplatform.settings import Settings
from mlplatform.spec import ProjectSpec


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _ledger(request: Request) -> Ledger:
    return request.app.state.ledger


async def _specs(request: Request) -> dict[str, ProjectSpec]:
    return request.app.state.specs


async def _production(request: Request) -> ProductionService:
    return request.app.state.production


async def _catalog(request: Request) -> BundleCatalog:
    return request.app.state.catalog


async def _verified(request: Request) -> VerifiedFiles:
    return request.app.state.verified


async def _metrics(request: Request) -> ServingMetrics:
    return request.app.state.metrics


async def _prediction_log(request: Request) -> PredictionLog:
    return request.app.state.prediction_log


async def _compiled(request: Request) -> Compiled:
    return request.app.state.compiled


async def _registry(request: Request) -> Tracker | None:
    return request.app.state.registry


SettingsDep = Annotated[Settings, Depends(_settings)]
LedgerDep = Annotated[Ledger, Depends(_ledger)]
SpecsDep = Annotated[dict[str, ProjectSpec], Depends(_specs)]
ProductionDep = Annotated[ProductionService, Depends(_production)]
CatalogDep = Annotated[BundleCatalog, Depends(_catalog)]
VerifiedDep = Annotated[VerifiedFiles, Depends(_verified)]
MetricsDep = Annotated[ServingMetrics, Depends(_metrics)]
PredictionLogDep = Annotated[PredictionLog, Depends(_prediction_log)]
CompiledDep = Annotated[Compiled, Depends(_compiled)]
RegistryDep = Annotated[Tracker | None, Depends(_registry)]


async def project_spec(project: str, specs: SpecsDep) -> ProjectSpec:
    """The spec of the path's ``project``; 404 when there is no such project."""
    spec = specs.get(project)
    if spec is None:
        raise HTTPException(404, f"unknown project {project!r}")
    return spec


ProjectDep = Annotated[ProjectSpec, Depends(project_spec)]


async def production_bundle(spec: ProjectDep, production: ProductionDep) -> Bundle:
    """The bundle the project serves now (read once: a request stays on it); 503 when a new
    bundle was refused or the ledger is down and nothing is served, 404 before any."""
    state = production.state(spec.name)
    if state.bundle is None and state.error is not None:
        raise HTTPException(503, state.error)  # a refused bundle or the ledger is down
    if state.bundle is None:
        raise HTTPException(404, f"project {spec.name!r} has no production bundle yet")
    return state.bundle


ProductionBundleDep = Annotated[Bundle, Depends(production_bundle)]
