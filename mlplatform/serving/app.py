"""The serving app: production manifests and downloads, predictions, reviews and rollbacks.

``create_app(settings)`` builds a FastAPI app; run it with uvicorn (``mlplatform serve`` uses
``app_from_env``). Every route declares one auth dependency (``auth.public``, ``auth.reader``
or ``auth.approver``). Promotion itself is the platform's Dagster ``production`` asset; this
app records approvals/rejections and performs rollbacks (``promotion.service``, the same code
as the CLI), and follows the ledger's production pointer by hot-swapping bundles
(``serving.production``).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from mlplatform.bundles.catalog import BundleCatalog
from mlplatform.bundles.format import MANIFEST, Bundle
from mlplatform.ledger import Ledger, LedgerError
from mlplatform.promotion import service as promotion
from mlplatform.promotion.alias import Tracker
from mlplatform.registry_rest import RestRegistry, is_server_uri
from mlplatform.serving.auth import Approver, Authenticator, Public, Reader
from mlplatform.serving.bodies import (
    DECISION_BODY_BYTES,
    DecisionBody,
    PredictBody,
    RollbackBody,
    request_body_doc,
)
from mlplatform.serving.docs import add_docs_routes
from mlplatform.serving.fastpath import PredictFastPath
from mlplatform.serving.headers import SecurityHeaders
from mlplatform.serving.metrics import MetricsMiddleware, ServingMetrics
from mlplatform.serving.predictor import FastPredictor
from mlplatform.serving.production import (
    ProductionService,
    VerifiedFiles,
    ledger_unavailable,
)
from mlplatform.serving.review import add_review_routes
from mlplatform.serving.schemas import (
    PRESCAN_BYTES,
    BundleSummary,
    CandidateOut,
    CandidatesOut,
    DecisionIn,
    DecisionOut,
    HealthOut,
    InputSchemaOut,
    PredictOut,
    PredictValidator,
    ProjectHealth,
    ProjectOut,
    ProjectsOut,
    PromotionOut,
    PromotionsOut,
    RollbackIn,
    error_details,
)
from mlplatform.settings import Settings, load_settings
from mlplatform.spec import ProjectSpec, load_specs

log = logging.getLogger(__name__)
JSON_MEDIA = "application/json"
INLINE_ROWS = 64  # predict batches up to this size run on the event loop
SWITCH_INTERVAL_S = 0.001
IMMUTABLE = "public, max-age=31536000, immutable"
PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["rows"],
                "additionalProperties": False,
                "properties": {
                    "rows": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 10_000,
                        "items": {
                            "type": "object",
                            "description": "Raw column values; see GET /v1/projects for the "
                            "columns of the production bundle.",
                        },
                    }
                },
            },
            "example": {"rows": [{"tenure_months": "3", "plan": "basic", "autopay": "false"}]},
        }
    },
}


def predict_answer(bundle_id: str, predictions: list[dict[str, Any]], chunk: int = 512) -> bytes:
    """``{"bundle_id", "predictions"}`` as compact JSON, encoded ``chunk`` predictions at a
    time (one long ``json.dumps`` would hold the interpreter for the whole batch)."""
    parts = [
        json.dumps(predictions[i : i + chunk], separators=(",", ":"))[1:-1]
        for i in range(0, len(predictions), chunk)
    ]
    head = json.dumps({"bundle_id": bundle_id}, separators=(",", ":"))[:-1]
    return f'{head},"predictions":[{",".join(parts)}]}}'.encode()


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an ``If-None-Match`` header with one ETag."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


class Compiled:
    """Per bundle id, its compiled predict validator and fast predictor (a few bundles live
    at a time)."""

    def __init__(self, limit: int = 16):
        self._by_id: dict[str, tuple[PredictValidator, FastPredictor]] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def of(self, bundle: Bundle) -> tuple[PredictValidator, FastPredictor]:
        found = self._by_id.get(bundle.bundle_id)
        if found is None:
            with self._lock:
                found = self._by_id.get(bundle.bundle_id)
                if found is None:
                    found = (PredictValidator(bundle.schema), FastPredictor(bundle))
                    if len(self._by_id) >= self._limit:
                        self._by_id.pop(next(iter(self._by_id)))
                    self._by_id[bundle.bundle_id] = found
        return found


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
    if registry is None and is_server_uri(settings.mlflow_tracking_uri):
        registry = RestRegistry(str(settings.mlflow_tracking_uri))
    specs: dict[str, ProjectSpec] = {s.name: s for s in load_specs(settings.projects_dir)}
    own_ledger = ledger is None
    ledger = ledger if ledger is not None else Ledger(settings.ledger)
    metrics = ServingMetrics()
    catalog = BundleCatalog(settings.bundles_dir)
    verified = VerifiedFiles(settings.bundles_dir)
    service = ProductionService(
        specs,
        ledger,
        settings.bundles_dir,
        poll_seconds=poll_seconds,
        on_swap=metrics.production_changed,
        on_refused=lambda project: metrics.swap_failures.labels(project).inc(),
    )
    compiled = Compiled()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A worker thread validating or predicting a large batch hands the interpreter back to
        # the event loop within 1 ms instead of 5 ms, so /healthz and small requests wait less.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        await run_in_threadpool(service.refresh_all)
        service.start()
        try:
            yield
        finally:
            service.stop()
            if own_ledger:
                ledger.dispose()  # closes pooled connections; it reconnects if used again

    app = FastAPI(
        title="mlplatform serving",
        summary="Production bundles: manifests, verified downloads, predictions, reviews.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.authenticator = Authenticator(settings.reader_tokens, settings.approver_tokens)
    app.state.ledger = ledger
    app.state.production = service
    app.state.catalog = catalog
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for err in exc.errors()[:100]:
            loc = list(err.get("loc", ()))
            if loc[:1] == ["body"]:
                loc = loc[1:]
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            field = ".".join(str(p) for p in loc) or "body"
            details.append({"field": field, "loc": loc, "msg": msg, "type": err.get("type")})
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(LedgerError)
    @app.exception_handler(SQLAlchemyError)
    async def ledger_failed(request: Request, exc: Exception) -> JSONResponse:
        message = ledger_unavailable(exc)
        log.error("%s %s: %s", request.method, request.url.path, message)
        return JSONResponse({"detail": message}, status_code=503)

    def project_spec(project: str) -> ProjectSpec:
        spec = specs.get(project)
        if spec is None:
            raise HTTPException(404, f"unknown project {project!r}")
        return spec

    def production_bundle(project: str) -> Bundle:
        project_spec(project)
        state = service.state(project)
        if state.bundle is None and state.error is not None:
            raise HTTPException(503, state.error)  # a refused bundle or the ledger is down
        if state.bundle is None:
            raise HTTPException(404, f"project {project!r} has no production bundle yet")
        return state.bundle

    # -- public ------------------------------------------------------------------------------

    @app.get("/healthz", response_model=HealthOut, dependencies=[Public], tags=["ops"])
    def healthz() -> HealthOut:
        """Liveness, the bundle each project serves, and why a new one was refused."""
        projects = {}
        for name in service.projects:
            st = service.state(name)
            projects[name] = ProjectHealth(
                bundle_id=st.bundle.bundle_id if st.bundle is not None else None,
                ledger_bundle_id=st.ledger_bundle_id,
                error=st.error,
                checked_at=st.checked_at,
            )
        ok = service.watching and all(p.error is None for p in projects.values())
        return HealthOut(
            status="ok" if ok else "degraded", watcher=service.watching, projects=projects
        )

    @app.get(
        "/metrics",
        response_class=Response,
        response_model=None,
        dependencies=[Public],
        tags=["ops"],
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
    )
    def prometheus_metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(metrics.render(), media_type=metrics.content_type)

    # -- readers -----------------------------------------------------------------------------

    @app.get("/v1/projects", response_model=ProjectsOut, tags=["projects"])
    def list_projects(who: Reader) -> ProjectsOut:
        """Every project, its production bundle and the input schema predict accepts."""
        out = []
        for name, spec in specs.items():
            bundle = service.current(name)
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

    @app.get(
        "/v1/projects/{project}/production",
        response_model=dict[str, Any],
        tags=["projects"],
        responses={304: {"description": "Not modified (If-None-Match matched the ETag)"}},
    )
    def production_manifest(project: str, request: Request, who: Reader) -> Response:
        """The manifest of the bundle served now; ``ETag`` is its quoted bundle id."""
        bundle = production_bundle(project)
        etag = f'"{bundle.bundle_id}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return JSONResponse(bundle.manifest, headers=headers)

    @app.get(
        "/v1/bundles/{bundle_id}/files/{path:path}",
        response_class=FileResponse,
        response_model=None,
        tags=["bundles"],
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The file"},
            304: {"description": "Not modified"},
        },
    )
    def bundle_file(bundle_id: str, path: str, request: Request, who: Reader) -> Response:
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

    @app.post(
        "/v1/projects/{project}/predict",
        response_model=PredictOut,
        tags=["predict"],
        openapi_extra={"requestBody": PREDICT_BODY},
        responses={422: {"description": "A row is invalid; `field` names it, `msg` says why"}},
    )
    async def predict(project: str, who: Reader, body: PredictBody) -> Response | dict[str, Any]:
        """Predict raw rows with the production bundle (``{"rows": [{column: value}]}``).

        Small requests run on the event loop (a thread hop costs more than the prediction);
        large bodies are validated, and large batches predicted, in the thread pool so they
        do not stall other requests."""
        bundle = production_bundle(project)  # read once: this request stays on this bundle
        validator, predictor = compiled.of(bundle)
        try:
            if len(body) > PRESCAN_BYTES:
                rows = await run_in_threadpool(validator.rows, body)
            else:
                rows = validator.rows(body)
        except ValidationError as exc:
            return JSONResponse({"detail": error_details(exc)}, status_code=422)
        # Our own plain JSON: the shape is PredictOut by construction (documented through
        # response_model), and re-validating every response would cost more than predicting.
        if len(rows) <= INLINE_ROWS:
            answer = predict_answer(bundle.bundle_id, predictor.predict_rows(rows))
        else:
            answer = await run_in_threadpool(
                lambda: predict_answer(bundle.bundle_id, predictor.predict_rows(rows))
            )
        metrics.predictions_child(project, bundle.bundle_id).inc(len(rows))
        return Response(answer, media_type=JSON_MEDIA)

    @app.get("/v1/projects/{project}/candidates", response_model=CandidatesOut, tags=["review"])
    def candidates(project: str, who: Reader) -> CandidatesOut:
        """Published bundles that are not production, their decisions, metrics vs production."""
        project_spec(project)
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

    @app.get("/v1/projects/{project}/promotions", response_model=PromotionsOut, tags=["review"])
    def promotions(project: str, who: Reader) -> PromotionsOut:
        """The append-only promotion history, oldest first."""
        project_spec(project)
        rows = [PromotionOut.model_validate(p) for p in ledger.history(project)]
        return PromotionsOut(
            project=project,
            production=rows[-1].to_bundle if rows else None,
            promotions=rows,
        )

    # -- approvers ---------------------------------------------------------------------------

    def refused(exc: promotion.PromotionRefused) -> HTTPException:
        status = 404 if isinstance(exc, promotion.NotPublished) else 400
        status = 409 if isinstance(exc, promotion.Conflict) else status
        return HTTPException(status, str(exc).replace(str(settings.bundles_dir), "bundles"))

    def decide(
        project: str, bundle_id: str, body: DecisionIn, who: Approver, verdict: str
    ) -> DecisionOut:
        project_spec(project)
        try:
            decision = promotion.decide(
                ledger, settings.bundles_dir, project, bundle_id, verdict, who.name, body.comment
            )
        except promotion.PromotionRefused as exc:
            raise refused(exc) from None
        log.info("%s: %s recorded %s of bundle %s", project, who.name, verdict, bundle_id)
        return DecisionOut.model_validate(decision)

    @app.post(
        "/v1/projects/{project}/candidates/{bundle_id}/approve",
        response_model=DecisionOut,
        status_code=201,
        tags=["review"],
        openapi_extra={"requestBody": request_body_doc(DecisionIn, DECISION_BODY_BYTES)},
    )
    def approve(project: str, bundle_id: str, who: Approver, body: DecisionBody) -> DecisionOut:
        """Approve a candidate; the platform's promotion sensor acts on it."""
        return decide(project, bundle_id, body, who, "approve")

    @app.post(
        "/v1/projects/{project}/candidates/{bundle_id}/reject",
        response_model=DecisionOut,
        status_code=201,
        tags=["review"],
        openapi_extra={"requestBody": request_body_doc(DecisionIn, DECISION_BODY_BYTES)},
    )
    def reject(project: str, bundle_id: str, who: Approver, body: DecisionBody) -> DecisionOut:
        """Reject a candidate."""
        return decide(project, bundle_id, body, who, "reject")

    @app.post(
        "/v1/projects/{project}/rollback",
        response_model=PromotionOut,
        status_code=201,
        tags=["review"],
        openapi_extra={"requestBody": request_body_doc(RollbackIn, DECISION_BODY_BYTES)},
    )
    def rollback(project: str, who: Approver, body: RollbackBody) -> PromotionOut:
        """Point production back at an earlier production bundle (verified first); instant."""
        project_spec(project)
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
            raise refused(exc) from None
        row = moved.row
        log.info("%s: %s rolled back %s -> %s", project, who.name, row.from_bundle, row.to_bundle)
        service.refresh(project)
        if moved.alias_error is not None:
            log.warning("%s: MLflow alias not moved: %s", project, moved.alias_error)
        return PromotionOut.model_validate(row)

    # -- the review page (public shell) and evaluation reports (readers) --------------------

    add_review_routes(app, settings, specs)
    if settings.serving_docs:
        add_docs_routes(app)
    predict_route = next(
        r for r in app.routes if getattr(r, "path", "") == "/v1/projects/{project}/predict"
    )
    if fast_path:
        app.add_middleware(
            PredictFastPath,
            authenticator=app.state.authenticator,
            production=lambda project: service.current(project) if project in specs else None,
            compiled=compiled.of,
            on_predicted=lambda project, bundle, n: metrics.predictions_child(
                project, bundle.bundle_id
            ).inc(n),
            route=predict_route,
            inline_rows=INLINE_ROWS,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # counts both paths
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


__all__ = ["app_from_env", "create_app", "etag_matches", "serve"]
