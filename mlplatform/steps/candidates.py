"""One interface over every candidate kind: fit, save, load, predict, export to ONNX.

Downstream steps (search, evaluation, bundle export) only see ``FittedModel``; which library
trained it is decided here, from the candidate's ``kind``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from mlplatform.spec import Candidate, ProjectSpec

if TYPE_CHECKING:
    import onnx

SUFFIX = {"sklearn": ".skops", "torch": ".safetensors"}


@dataclass(frozen=True)
class EpochLog:
    """One epoch of an iterative trainer: losses and metrics on its validation slice."""

    epoch: int
    train_loss: float
    val_loss: float
    val_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Strict JSON: a metric undefined on the slice (NaN) becomes null."""

        def finite(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {
            "epoch": self.epoch,
            "train_loss": finite(self.train_loss),
            "val_loss": finite(self.val_loss),
            "val_metrics": {k: finite(v) for k, v in self.val_metrics.items()},
            "seconds": self.seconds,
        }


OnEpoch = Callable[[EpochLog], None]


class FittedModel(Protocol):
    """A trained candidate, whatever library trained it."""

    @property
    def classes(self) -> list[str] | None:
        """Class labels in the column order of ``predict`` (None for regression)."""

    @property
    def history(self) -> list[EpochLog]:
        """Per-epoch log of iterative trainers (empty for one-shot fits)."""

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Probabilities [N, C] (classification) or values [N] (regression), float64."""

    def to_onnx(self) -> onnx.ModelProto:
        """One graph: one [N, 1] input per feature of ``layout(spec)``; outputs
        ``[label, probabilities]`` (classification) or ``[value]`` (regression)."""

    def save(self, path: Path) -> None:
        """Write the model (no pickle) atomically at ``path``."""


def model_suffix(candidate: Candidate) -> str:
    return SUFFIX[candidate.kind]


def fit(
    train: pd.DataFrame,
    spec: ProjectSpec,
    candidate: Candidate,
    on_epoch: OnEpoch | None = None,
) -> FittedModel:
    """Fit one candidate on a training frame (features + target)."""
    if candidate.kind == "torch":
        from mlplatform.steps import train_torch

        return train_torch.fit_torch(train, spec, candidate, on_epoch=on_epoch)
    from mlplatform.steps import train_sklearn

    return train_sklearn.SklearnModel(train_sklearn.fit_candidate(train, spec, candidate), spec)


def load(path: Path, spec: ProjectSpec, candidate: Candidate) -> FittedModel:
    """Load a stored candidate, refusing anything but our own safe formats."""
    if candidate.kind == "torch":
        from mlplatform.steps import train_torch

        return train_torch.load_torch(path, spec)
    from mlplatform.steps import train_sklearn

    return train_sklearn.SklearnModel(train_sklearn.load_pipeline(path), spec)
