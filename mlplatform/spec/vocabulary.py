"""The words a spec may use: names, tasks, column types, estimators, metrics, dates."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
Task = Literal["binary", "multiclass", "regression"]
ColumnType = Literal["float", "int", "category", "bool", "date", "id"]
DatePart = Literal["year", "month", "day", "dayofweek", "dayofyear", "quarter"]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = Weekday.__args__  # type: ignore[attr-defined]

# Partition dates Dagster's time windows handle: four-digit years, ends before 3000.
FIRST_DATE, LAST_DATE = dt.date(1000, 1, 1), dt.date(2999, 12, 31)

CLASSIFIERS = (
    "logistic_regression",
    "random_forest_classifier",
    "hist_gradient_boosting_classifier",
    "extra_trees_classifier",
)
REGRESSORS = (
    "ridge",
    "linear_regression",
    "random_forest_regressor",
    "hist_gradient_boosting_regressor",
    "extra_trees_regressor",
)
CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "log_loss", "accuracy", "balanced_accuracy", "f1")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


class Frozen(BaseModel):
    """Base of every spec section: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
