"""MLflow "models from code" entry point, copied into every bundle's MLflow model.

Stock ``mlflow.pyfunc.load_model(bundle/model).predict(df)`` takes a DataFrame of raw columns
(as in the landing files) and returns a DataFrame: class probabilities per class and the
predicted label, or the predicted value. No pickle: the model is ONNX run by onnxruntime.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import onnxruntime as ort
import pandas as pd
from mlflow.pyfunc import PythonModel
from mlflow.pyfunc.model import PythonModelContext

from mlplatform.bundles.format import InputSchema


class OnnxTabularModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        with open(context.artifacts["input_schema"], encoding="utf-8") as fh:
            data = json.load(fh)
        self.schema = InputSchema.from_json(data)
        self.classes = data.get("classes")
        self.session = ort.InferenceSession(
            context.artifacts["onnx"], providers=["CPUExecutionProvider"]
        )

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        raw = {c: model_input[c].to_numpy(dtype=object) for c in self.schema.feature_columns}
        outputs = self.session.run(None, self.schema.model_inputs(raw))
        if not self.classes:
            return pd.DataFrame({"prediction": np.asarray(outputs[0]).reshape(-1)})
        proba = np.asarray(outputs[1], dtype=np.float64)
        frame = pd.DataFrame(proba, columns=[f"proba_{c}" for c in self.classes])
        frame.insert(0, "label", np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)])
        return frame


mlflow.models.set_model(OnnxTabularModel())
