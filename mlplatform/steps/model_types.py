"""The types every candidate kind shares: a fitted model and its per-epoch log.

They live below the trainers (``train_sklearn``, ``train_torch``) and ``candidates``, which
dispatches to them, so that no trainer imports the dispatcher back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import onnx


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


@dataclass(frozen=True)
class TrainedModel:
    """A trained candidate as it flows between assets: the model and its training manifest
    (window, data versions, params, provenance, MLflow run)."""

    fitted: FittedModel
    manifest: dict[str, Any]
