"""Reference predictors fitted on the training window's targets only: the bar candidates must
clear (class prior; window, last-partition and seasonal means)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from mlplatform.spec import ProjectSpec
from mlplatform.steps.evaluate import Prediction, Predictor

# Baseline names hold a "-", which candidate names (``[a-z][a-z0-9_]*``) cannot.
PRIOR = "baseline-prior"
MEAN = "baseline-mean"
LAST = "baseline-last"
SEASONAL = "baseline-seasonal"


def baseline_predictors(
    spec: ProjectSpec,
    window: Mapping[str, np.ndarray],
    seasonal: np.ndarray | None = None,
) -> dict[str, Predictor]:
    """Reference predictors fitted on the training window's targets only (``window``: partition
    key -> target values, in key order). Classification: the window's class prior (its argmax is
    the majority label). Regression: the window mean, the last partition's mean, and the mean of
    ``seasonal`` (the partition one season before the holdout) when given."""
    parts = [np.asarray(v) for _, v in sorted(window.items()) if len(v)]
    if not parts:
        return {}
    if spec.task == "regression":
        last = float(np.mean(parts[-1].astype(np.float64)))
        means = {
            MEAN: float(np.mean(np.concatenate(parts).astype(np.float64))),
            LAST: last,
        }
        if seasonal is not None and len(seasonal):
            means[SEASONAL] = float(np.mean(np.asarray(seasonal, dtype=np.float64)))
        return {name: _constant(value) for name, value in means.items()}
    labels = pd.Series(np.concatenate(parts).astype(str))
    prior = labels.value_counts(normalize=True)
    return {PRIOR: _prior(spec.target, prior)}


def _constant(value: float) -> Predictor:
    def predict(frame: pd.DataFrame) -> Prediction:
        return Prediction(values=np.full(len(frame), value, dtype=np.float64))

    return predict


def _prior(target: str, prior: pd.Series) -> Predictor:
    """Class prior probabilities for every row; classes sorted as the candidates' are, with the
    holdout's labels unseen in the window at probability 0."""

    def predict(frame: pd.DataFrame) -> Prediction:
        seen = {str(v) for v in frame[target]} if target in frame else set()
        classes = sorted(set(prior.index) | seen)
        row = np.array([float(prior.get(c, 0.0)) for c in classes])
        return Prediction(classes=classes, proba=np.tile(row, (len(frame), 1)))

    return predict
