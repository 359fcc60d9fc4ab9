"""The blocking ``no_leakage`` check: features that on their own give the target away."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlplatform.spec import ProjectSpec
from mlplatform.steps.features import (
    LEAKAGE_TREE_DEPTH,
    average_ranks,
    leakage_findings,
    one_feature_tree,
    rank_auc,
)

N = 400


def spec(task: str, target_type: str, values: list[str] | None = None) -> ProjectSpec:
    target: dict[str, Any] = {"type": target_type, "nullable": False}
    if values:
        target["values"] = values
    metric = "rmse" if task == "regression" else "log_loss"
    estimator = "ridge" if task == "regression" else "logistic_regression"
    return ProjectSpec.model_validate(
        {
            "name": "leaky",
            "task": task,
            "target": "y",
            "data": {"landing": "/tmp/leaky"},
            "partitions": {"start": "2024-01-01"},
            "columns": {
                "x": {"type": "float"},
                "noise": {"type": "float"},
                "level": {"type": "category"},
                "y": target,
            },
            "candidates": [{"name": "model", "estimator": estimator}],
            "evaluation": {"primary_metric": metric},
        }
    )


BINARY = spec("binary", "category", ["no", "yes"])
MULTICLASS = spec("multiclass", "category", ["a", "b", "c"])
REGRESSION = spec("regression", "float")


def frame(x: np.ndarray, y: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Features with honest noise beside ``x``, and the target."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": x.astype(np.float32),
            "noise": rng.normal(0, 1, len(x)).astype(np.float32),
            "level": rng.choice(["p", "q", "r"], len(x)).astype(object),
            "y": y,
        }
    )


def test_rank_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, 60).astype(float)  # ties count half
    positive = rng.random(60) < 0.4
    pairs = [1.0 if a > b else 0.5 if a == b else 0.0 for a in x[positive] for b in x[~positive]]
    assert rank_auc(x, positive) == pytest.approx(np.mean(pairs))


@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(1).normal(size=500),  # distinct values
        np.random.default_rng(2).integers(0, 4, 500).astype(float),  # few values, many ties
        np.array([0.0, -0.0, 1.0, -0.0, np.inf, -np.inf, 1e-300, 5e-324, 1.0]),
        np.random.default_rng(4).integers(-30, 2000, 500).astype(np.float32),  # counted
        np.array([3.0, -0.0, 0.0, 3.0, 65535.0]),  # whole, the widest counted range
        np.array([1.0, 65537.0, 1.0]),  # whole, too far apart: hashed
    ],
    ids=["distinct", "ties", "edges", "whole_float32", "whole_edge", "whole_wide"],
)
def test_average_ranks_are_pandas_average_ranks(x: np.ndarray) -> None:
    assert np.array_equal(average_ranks(x), pd.Series(x).rank(method="average").to_numpy())


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_one_feature_tree_scores_like_sklearns_tree(task: str) -> None:
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    rng = np.random.default_rng(8)
    x = np.round(rng.normal(0, 1, 600), 2)  # with ties
    signal = np.sin(3 * x) + rng.normal(0, 0.5, 600)
    model = DecisionTreeRegressor if task == "regression" else DecisionTreeClassifier
    y = signal if task == "regression" else np.digitize(signal, [-0.5, 0.5]).astype(str)
    tree = model(max_depth=LEAKAGE_TREE_DEPTH[task], min_samples_leaf=6, random_state=0)
    expected = tree.fit(x.reshape(-1, 1), y).score(x.reshape(-1, 1), y)
    assert one_feature_tree(x, y, task) == pytest.approx(expected, abs=1e-9)
    assert 0.3 < expected < 0.95  # a real but imperfect signal


def test_threshold_leak_is_caught_naming_column_and_score() -> None:
    x = np.random.default_rng(1).normal(50, 10, N)
    y = np.where(x > 57.3, "yes", "no").astype(object)  # target = column > constant
    found = leakage_findings(frame(x, y), BINARY)
    assert len(found) == 1
    assert "'x'" in found[0] and "rank AUC 1.0000" in found[0] and "features.exclude" in found[0]


def test_threshold_leak_with_a_few_noisy_labels_is_still_caught() -> None:
    x = np.random.default_rng(2).uniform(0, 1, N)
    y = np.where(x > 0.6, "yes", "no").astype(object)
    y[:1] = np.where(y[:1] == "yes", "no", "yes")  # one flipped label of 400
    found = leakage_findings(frame(x, y), BINARY)
    assert len(found) == 1 and "'x'" in found[0] and "one-feature tree" in found[0]


def test_binned_leak_is_caught_although_not_monotone() -> None:
    x = np.random.default_rng(4).uniform(0, 100, N)
    band = np.digitize(x, [20, 45, 70, 90]) % 3  # a few bins, classes not ordered by x
    y = np.array(["a", "b", "c"], dtype=object)[band]
    found = leakage_findings(frame(x, y), MULTICLASS)
    assert len(found) == 1 and "'x'" in found[0]
    assert "one-feature tree of depth 4 is right on 100.0% of rows" in found[0]


def test_binary_band_leak_is_caught() -> None:
    x = np.random.default_rng(5).uniform(0, 1, N)
    y = np.where((x > 0.3) & (x < 0.5), "yes", "no").astype(object)  # AUC alone misses it
    found = leakage_findings(frame(x, y), BINARY)
    assert len(found) == 1 and "one-feature tree" in found[0]


@pytest.mark.parametrize(
    "make_y",
    [
        lambda x, rng: 3 * x + rng.normal(0, 1e-3, len(x)),
        lambda x, rng: x**2 + rng.normal(0, 1e-3, len(x)),  # not linear: correlation ~0
    ],
    ids=["linear", "square"],
)
def test_regression_leak_is_caught(make_y: Any) -> None:
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, N)
    found = leakage_findings(frame(x, make_y(x, rng)), REGRESSION)
    assert len(found) == 1 and "'x'" in found[0] and "explains R²" in found[0]


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_honest_features_are_not_flagged(task: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, N)
    signal = x + rng.normal(0, 1, N)  # a useful feature, far from a perfect one
    if task == "regression":
        y: np.ndarray = signal
        s = REGRESSION
    elif task == "binary":
        y, s = np.where(signal > 0.5, "yes", "no").astype(object), BINARY
    else:
        y = np.array(["a", "b", "c"], dtype=object)[np.digitize(signal, [-0.5, 0.7])]
        s = MULTICLASS
    assert leakage_findings(frame(x, y), s) == []


def test_rare_class_perfectly_ranked_by_chance_is_not_flagged() -> None:
    x = np.arange(N, dtype=float)
    y = np.full(N, "no", dtype=object)
    y[-3:] = "yes"  # three rows: too few to call a perfect AUC a leak
    assert leakage_findings(frame(x, y), BINARY) == []
