"""The serving app: production manifests and downloads, predictions, reviews and rollbacks.

``create_app(settings)`` builds a FastAPI app from its parts (on ``app.state``, read by the
routes through ``serving.deps``) and the routers of ``serving.routes``; run it with uvicorn
(``mlplatform serve`` uses ``app_from_env``). Every route declares one auth dependency
(``auth.public``, ``auth.reader`` or ``auth.approver``). Promotion itself is the platform's
Dagster ``production`` asset; this app records approvals/rejections and performs rollbacks
(``promotion.service``, the same code as the CLI), and follows the ledger's production
pointer by hot-swapping bundles (``serving.production``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from mlplatform.bundles.catalog import BundleCatalog
from mlplatform.ledger import Ledger, LedgerError
from mlplatform.promotion.alias import Tracker
from mlplatform.registry_rest import RestRegistry, is_server_uri
from mlplatform.serving.auth import Authenticator
from mlplatform.serving.fastpath import PredictFastPath
from mlplatform.serving.headers import SecurityHeaders
from mlplatform.serving.log_writer import (
    PredictionLog,
    PredictionLogCollector,
    PredictionLogMiddleware,
)
from mlplatform.serving.metrics import MetricsMiddleware, ServingMetrics
from mlplatform.serving.predict import INLINE_ROWS, Compiled
from mlplatform.serving.production import ProductionService, VerifiedFiles, ledger_unavailable
from mlplatform.serving.routes import (
    add_routes,
    bundles,
    docs,
    ops,
    pages,
    predict,
    review,
    shadow,
)
from mlplatform.serving.shadow import ShadowBundles
from mlplatform.settings import Settings, load_settings
from mlplatform.spec import load_specs

log = logging.getLogger(__name__)
SWITCH_INTERVAL_S = 0.001


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load every project's production bundle, watch the ledger, close what the app owns."""
    # A worker thread validating or predicting a large batch hands the interpreter back to
    # the event loop within 1 ms instead of 5 ms, so /healthz and small requests wait less.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
    service: ProductionService = app.state.production
    await run_in_threadpool(service.refresh_all)
    service.start()
    app.state.prediction_log.start()
    try:
        yield
    finally:
        service.stop()
        app.state.prediction_log.stop()  # writes what is still queued
        if app.state.owns_ledger:
            app.state.ledger.dispose()  # closes pooled connections; it reconnects if used again


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with one entry per problem: ``field`` (dotted path), ``loc``, ``msg``, ``type``."""
    assert isinstance(exc, RequestValidationError)
    details = []
    for err in exc.errors()[:100]:
        loc = list(err.get("loc", ()))
        if loc[:1] == ["body"]:
            loc = loc[1:]
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        field = ".".join(str(p) for p in loc) or "body"
        details.append({"field": field, "loc": loc, "msg": msg, "type": err.get("type")})
    return JSONResponse({"detail": details}, status_code=422)


async def ledger_failed(request: Request, exc: Exception) -> JSONResponse:
    """503 ``ledger unavailable: ...`` in one line when the ledger cannot be reached."""
    message = ledger_unavailable(exc)
    log.error("%s %s: %s", request.method, request.url.path, message)
    return JSONResponse({"detail": message}, status_code=503)


def add_state(
    app: FastAPI,
    settings: Settings,
    poll_seconds: float,
    ledger: Ledger | None,
    registry: Tracker | None,
) -> None:
    """Put the app's parts on ``app.state`` (``serving.deps`` hands them to the routes)."""
    if registry is None and is_server_uri(settings.mlflow_tracking_uri):
        registry = RestRegistry(str(settings.mlflow_tracking_uri))
    state = app.state
    state.settings = settings
    state.specs = {s.name: s for s in load_specs(settings.projects_dir)}
    state.owns_ledger = ledger is None
    state.ledger = ledger if ledger is not None else Ledger(settings.ledger)
    state.registry = registry
    state.authenticator = Authenticator(settings.reader_tokens, settings.approver_tokens)
    state.metrics = metrics = ServingMetrics()
    state.shadow = ShadowBundles(state.specs, settings.home, settings.bundles_dir)
    state.prediction_log = PredictionLog(state.specs, settings.prediction_log, state.shadow.folder)
    state.prediction_log.check()
    metrics.registry.register(PredictionLogCollector(state.prediction_log))
    state.catalog = BundleCatalog(settings.bundles_dir)
    state.verified = VerifiedFiles(settings.bundles_dir)
    state.compiled = Compiled()
    state.production = ProductionService(
        state.specs,
        state.ledger,
        settings.bundles_dir,
        poll_seconds=poll_seconds,
        on_swap=metrics.production_changed,
        on_refused=lambda project: metrics.swap_failures.labels(project).inc(),
    )


def add_fast_path(app: FastAPI) -> None:
    """Answer small successful predicts in front of FastAPI (``serving.fastpath``)."""
    state = app.state
    route = next(r for r in app.routes if getattr(r, "path", "") == predict.PREDICT_PATH)
    app.add_middleware(
        PredictFastPath,
        authenticator=state.authenticator,
        production=lambda p: state.production.current(p) if p in state.specs else None,
        compiled=state.compiled.of,
        on_predicted=lambda p, bundle, n: state.metrics.predictions_child(p, bundle.bundle_id).inc(
            n
        ),
        route=route,
        inline_rows=INLINE_ROWS,
    )


def create_app(
    settings: Settings,
    *,
    poll_seconds: float = 1.0,
    ledger: Ledger | None = None,
    fast_path: bool = True,
    registry: Tracker | None = None,
) -> FastAPI:
    """The serving app for the projects in ``settings.projects_dir``. ``fast_path=False``
    leaves every predict to the FastAPI route (the tests compare both). ``registry`` moves
    the MLflow alias after a rollback (default: the tracking server of
    ``settings.mlflow_tracking_uri``; none for a local MLflow, whose alias the promotion
    sensor re-syncs)."""
    app = FastAPI(
        title="mlplatform serving",
        summary="Production bundles: manifests, verified downloads, predictions, reviews.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    add_state(app, settings, poll_seconds, ledger, registry)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(LedgerError, ledger_failed)
    app.add_exception_handler(SQLAlchemyError, ledger_failed)
    for router in (
        ops.router,
        bundles.router,
        predict.router,
        review.router,
        shadow.router,
        pages.router,
    ):
        add_routes(app, router)
    if settings.serving_docs:
        add_routes(app, docs.router)
    if fast_path:
        add_fast_path(app)
    app.add_middleware(PredictionLogMiddleware, prediction_log=app.state.prediction_log)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # counts both paths
    app.add_middleware(SecurityHeaders)  # outermost: every answer gets them
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory``: settings from ``MLPLATFORM_*``."""
    return create_app(load_settings())


def serve(
    settings: Settings, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any
) -> None:
    """Run the app with uvicorn in this process (blocks)."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, **uvicorn_options)


__all__ = ["app_from_env", "create_app", "serve"]
