"""A fitted sklearn pipeline as one ONNX graph (the sklearn counterpart of ``torch_onnx``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import onnx
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from mlplatform.spec import ProjectSpec
from mlplatform.steps.features import layout


def pipeline_to_onnx(pipeline: Pipeline, spec: ProjectSpec) -> onnx.ModelProto:
    """One ONNX graph of preprocessing + estimator with one [N, 1] input per feature."""
    types = [
        (name, FloatTensorType([None, 1]) if kind == "numeric" else StringTensorType([None, 1]))
        for name, kind in layout(spec)
    ]
    options = None if spec.task == "regression" else {id(pipeline): {"zipmap": False}}
    with _without_bootstrap(pipeline):
        model = to_onnx(pipeline, initial_types=types, options=options)
    model.doc_string = f"mlplatform {spec.name}"
    return model


@contextmanager
def _without_bootstrap(pipeline: Pipeline) -> Iterator[None]:
    """skl2onnx reads every attribute of a forest, and ``estimators_samples_`` redraws each
    tree's bootstrap sample (seconds on large training sets). ``bootstrap`` only matters for
    fitting, so switch it off while converting and restore it afterwards."""
    changed = [step for _, step in pipeline.steps if getattr(step, "bootstrap", False) is True]
    for step in changed:
        step.bootstrap = False
    try:
        yield
    finally:
        for step in changed:
            step.bootstrap = True
