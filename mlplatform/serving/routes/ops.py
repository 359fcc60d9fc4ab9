"""Operations (public): liveness with each project's served bundle, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from mlplatform.serving.auth import Public
from mlplatform.serving.deps import MetricsDep, PredictionLogDep, ProductionDep
from mlplatform.serving.schemas import HealthOut, PredictionLogHealth, ProjectHealth

router = APIRouter(tags=["ops"], dependencies=[Public])


@router.get("/healthz", response_model=HealthOut)
def healthz(production: ProductionDep, prediction_log: PredictionLogDep) -> HealthOut:
    """Liveness, the bundle each project serves, why a new one was refused, and the counts
    of each prediction log (dropped samples included)."""
    projects = {}
    for name in production.projects:
        st = production.state(name)
        projects[name] = ProjectHealth(
            bundle_id=st.bundle.bundle_id if st.bundle is not None else None,
            ledger_bundle_id=st.ledger_bundle_id,
            error=st.error,
            checked_at=st.checked_at,
        )
    ok = production.watching and all(p.error is None for p in projects.values())
    return HealthOut(
        status="ok" if ok else "degraded",
        watcher=production.watching,
        projects=projects,
        prediction_log={
            p: PredictionLogHealth(**vars(st)) for p, st in prediction_log.stats().items()
        },
    )


@router.get(
    "/metrics",
    response_class=Response,
    response_model=None,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
)
def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics of this process."""
    return Response(metrics.render(), media_type=metrics.content_type)
