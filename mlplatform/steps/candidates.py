"""One interface over every candidate kind: fit, save, load, predict, export to ONNX.

Downstream steps (search, evaluation, bundle export) only see ``FittedModel`` (in
``model_types``); which library trained it is decided here, from the candidate's ``kind``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlplatform.spec import Candidate, ProjectSpec
from mlplatform.steps.model_types import FittedModel, OnEpoch
from mlplatform.steps.window_files import WindowFiles

SUFFIX = {"sklearn": ".skops", "torch": ".safetensors"}


def model_suffix(candidate: Candidate) -> str:
    return SUFFIX[candidate.kind]


def fit(
    train: pd.DataFrame | WindowFiles,
    spec: ProjectSpec,
    candidate: Candidate,
    on_epoch: OnEpoch | None = None,
) -> FittedModel:
    """Fit one candidate on a training frame (features + target); torch candidates also on a
    window's files (``WindowFiles``)."""
    if candidate.kind == "torch":
        from mlplatform.steps import train_torch

        return train_torch.fit_torch(train, spec, candidate, on_epoch=on_epoch)
    from mlplatform.steps import train_sklearn

    if isinstance(train, WindowFiles):
        raise TypeError(f"{candidate.name}: sklearn candidates train on one frame of the window")
    return train_sklearn.SklearnModel(train_sklearn.fit_candidate(train, spec, candidate), spec)


def load(path: Path, spec: ProjectSpec, candidate: Candidate) -> FittedModel:
    """Load a stored candidate, refusing anything but our own safe formats."""
    if candidate.kind == "torch":
        from mlplatform.steps import torch_model

        return torch_model.load_torch(path, spec)
    from mlplatform.steps import train_sklearn

    return train_sklearn.SklearnModel(train_sklearn.load_pipeline(path), spec)
