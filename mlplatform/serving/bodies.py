"""Request bodies read with a per-route cap, only after the route's authentication.

A route that takes a body declares it as a dependency that itself depends on the route's auth
dependency (``Approver`` or ``Reader``), so FastAPI checks the token first and a request
without one is answered 401 before a byte of its body is read. The body is then streamed and
refused (413, one line) as soon as it passes the route's cap, before any parsing; a declared
``Content-Length`` over the cap is refused without reading at all.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from mlplatform.serving.auth import Approver, Reader
from mlplatform.serving.schemas import DecisionIn, RollbackIn

PREDICT_BODY_BYTES = 64 * 1024 * 1024
DECISION_BODY_BYTES = 32 * 1024  # a 4000-character comment or reason, even fully escaped

Model = TypeVar("Model", bound=BaseModel)


class BodyTooLarge(HTTPException):
    """413: the body is over the route's cap (an HTTPException, so FastAPI passes it through)."""

    def __init__(self, limit: int):
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"request body too large: this route accepts at most {limit} bytes",
        )


async def read_capped(request: Request, limit: int) -> bytearray:
    """The body, read chunk by chunk and refused as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    body = bytearray()  # grown chunk by chunk: no copy of a large body at the end
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge(limit)
        body += chunk
    return body


def parse_model(model: type[Model], body: bytearray) -> Model:
    """``body`` as ``model``; invalid JSON or fields -> the app's 422 (field and reason)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


async def predict_body(request: Request, who: Reader) -> bytearray:
    """The raw predict body of an authenticated reader (validated per bundle later)."""
    return await read_capped(request, PREDICT_BODY_BYTES)


async def decision_body(request: Request, who: Approver) -> DecisionIn:
    """The body of an approval or rejection, read only after the approver token checked out."""
    return parse_model(DecisionIn, await read_capped(request, DECISION_BODY_BYTES))


async def rollback_body(request: Request, who: Approver) -> RollbackIn:
    """The body of a rollback, read only after the approver token checked out."""
    return parse_model(RollbackIn, await read_capped(request, DECISION_BODY_BYTES))


PredictBody = Annotated[bytearray, Depends(predict_body)]
DecisionBody = Annotated[DecisionIn, Depends(decision_body)]
RollbackBody = Annotated[RollbackIn, Depends(rollback_body)]


def request_body_doc(model: type[BaseModel], limit: int) -> dict[str, object]:
    """OpenAPI ``requestBody`` of a model read through one of these dependencies."""
    return {
        "required": True,
        "description": f"At most {limit} bytes (413 beyond).",
        "content": {"application/json": {"schema": model.model_json_schema()}},
    }
