"""``POST /v1/projects/{project}/predict`` (readers): the predict contract of ``serving.predict``
behind FastAPI; the fast path (``serving.fastpath``) answers small successful predicts the
same way in front of it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from mlplatform.serving.auth import Reader
from mlplatform.serving.bodies import PredictBody
from mlplatform.serving.deps import CompiledDep, MetricsDep, ProductionBundleDep
from mlplatform.serving.predict import INLINE_ROWS, JSON_MEDIA, PREDICT_BODY_DOC, answer
from mlplatform.serving.rows import PRESCAN_BYTES, error_details
from mlplatform.serving.schemas import PredictOut

PREDICT_PATH = "/v1/projects/{project}/predict"
router = APIRouter()


@router.post(
    PREDICT_PATH,
    response_model=PredictOut,
    tags=["predict"],
    openapi_extra={"requestBody": PREDICT_BODY_DOC},
    responses={422: {"description": "A row is invalid; `field` names it, `msg` says why"}},
)
async def predict(
    project: str,
    who: Reader,
    body: PredictBody,
    bundle: ProductionBundleDep,
    compiled: CompiledDep,
    metrics: MetricsDep,
) -> Response | dict[str, Any]:
    """Predict raw rows with the production bundle (``{"rows": [{column: value}]}``).

    Small requests run on the event loop (a thread hop costs more than the prediction);
    large bodies are validated, and large batches predicted, in the thread pool so they
    do not stall other requests."""
    validator, predictor = compiled.of(bundle)
    try:
        if len(body) > PRESCAN_BYTES:
            rows = await run_in_threadpool(validator.rows, body)
        else:
            rows = validator.rows(body)
    except ValidationError as exc:
        return JSONResponse({"detail": error_details(exc)}, status_code=422)
    if len(rows) <= INLINE_ROWS:
        reply = answer(bundle, predictor, rows)
    else:
        reply = await run_in_threadpool(answer, bundle, predictor, rows)
    metrics.predictions_child(project, bundle.bundle_id).inc(len(rows))
    return Response(reply, media_type=JSON_MEDIA)
