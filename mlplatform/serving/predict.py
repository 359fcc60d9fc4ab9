"""The predict contract, written once: validate rows -> predict -> answer bytes.

Both the FastAPI route (``routes/predict.py``) and the ASGI fast path (``fastpath.py``) answer
through ``Compiled`` (per-bundle validator and predictor) and ``answer`` (the bytes of a
``PredictOut``), so their answers are the same by construction. The answer is our own compact
JSON in the shape of ``schemas.PredictOut`` (tests validate it against that model); building a
pydantic model per row would cost more than the prediction.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from mlplatform.bundles.format import Bundle
from mlplatform.serving.predictor import FastPredictor
from mlplatform.serving.rows import PredictValidator

INLINE_ROWS = 64  # predict batches up to this size run on the event loop
JSON_MEDIA = "application/json"
PREDICT_BODY_DOC = {
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


def answer(bundle: Bundle, predictor: FastPredictor, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The ``PredictOut`` bytes of validated ``rows`` predicted by ``bundle``."""
    return predict_answer(bundle.bundle_id, predictor.predict_rows(rows))


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
