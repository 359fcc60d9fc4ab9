"""The predict contract (``serving.predict``): its answer is exactly a ``PredictOut``, for both
prediction kinds and across encoding chunks, and the route and the fast path share it."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from mlplatform.serving import fastpath, predict
from mlplatform.serving.routes import predict as predict_route
from mlplatform.serving.schemas import PredictOut

CLASSES: list[dict[str, Any]] = [
    {"label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}},
    {"label": "no", "probabilities": {"no": 1.0, "yes": 0.0}},
]
VALUES: list[dict[str, Any]] = [{"value": 1.5}, {"value": -2.0}, {"value": 0.0}]


@pytest.mark.parametrize("predictions", [CLASSES, VALUES, VALUES * 7], ids=["class", "value", "7x"])
@pytest.mark.parametrize("chunk", [1, 2, 512])
def test_answer_is_exactly_a_predict_out(predictions: list[dict[str, Any]], chunk: int) -> None:
    body = predict.predict_answer("b-1", predictions, chunk=chunk)
    expected = {"bundle_id": "b-1", "predictions": predictions}
    assert body == json.dumps(expected, separators=(",", ":")).encode()
    assert PredictOut.model_validate_json(body).model_dump() == expected


def test_route_and_fast_path_answer_through_the_one_contract() -> None:
    for module in (fastpath, predict_route):
        source = inspect.getsource(module)
        assert "answer(bundle, predictor, rows)" in source, module.__name__
        assert "json.dumps" not in source and "predict_rows" not in source, module.__name__
