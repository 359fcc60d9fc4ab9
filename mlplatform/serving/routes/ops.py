"""Operations (public): liveness with each project's served bundle, Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Response

from mlplatform.serving.auth import Public
from mlplatform.serving.deps import MetricsDep, PredictionLogDep, ProductionDep
from mlplatform.serving.log_writer import PredictionLog
from mlplatform.serving.routes.shadow import ShadowDep
from mlplatform.serving.schemas import HealthOut, PredictionLogHealth, ProjectHealth, ShadowHealth
from mlplatform.serving.shadow import ShadowBundles

router = APIRouter(tags=["ops"], dependencies=[Public])


@router.get("/healthz", response_model=HealthOut)
def healthz(
    production: ProductionDep, prediction_log: PredictionLogDep, shadows: ShadowDep
) -> HealthOut:
    """Liveness, the bundle each project serves, why a new one was refused, the counts
    of each prediction log (dropped samples included) and of each shadow bundle."""
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
        shadow=shadow_health(production.projects, shadows, prediction_log),
    )


def shadow_health(
    projects: Iterable[str], shadows: ShadowBundles, prediction_log: PredictionLog
) -> dict[str, ShadowHealth]:
    """Each project's shadow bundle and its counts, for projects whose log is on or that
    have one attached."""
    out = {}
    for name in projects:
        state = shadows.state(name)
        attached = state.attachment.bundle_id if state.attachment is not None else None
        logged = name in prediction_log.projects
        if attached is None and not logged:
            continue
        error = state.error
        if attached is not None and error is None and not logged:
            error = "the prediction log is off (monitoring.log.rate: 0): nothing is shadowed"
        counts = prediction_log.shadow_counts.counts(name, attached)
        out[name] = ShadowHealth(**{**vars(counts), "error": error})
    return out


@router.get(
    "/metrics",
    response_class=Response,
    response_model=None,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
)
def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics of this process."""
    return Response(metrics.render(), media_type=metrics.content_type)
