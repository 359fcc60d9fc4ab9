"""Operations (public): liveness with each project's served bundle, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from mlplatform.serving.auth import Public
from mlplatform.serving.deps import MetricsDep, ProductionDep
from mlplatform.serving.schemas import HealthOut, ProjectHealth

router = APIRouter(tags=["ops"], dependencies=[Public])


@router.get("/healthz", response_model=HealthOut)
def healthz(production: ProductionDep) -> HealthOut:
    """Liveness, the bundle each project serves, and why a new one was refused."""
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
        status="ok" if ok else "degraded", watcher=production.watching, projects=projects
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
