"""Fit sklearn candidates as one Pipeline (preprocessing + estimator) and store them with skops."""

from __future__ import annotations

import inspect
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlplatform.spec import Candidate, ProjectSpec
from mlplatform.steps.features import layout

ESTIMATORS: dict[str, type] = {
    "logistic_regression": LogisticRegression,
    "random_forest_classifier": RandomForestClassifier,
    "hist_gradient_boosting_classifier": HistGradientBoostingClassifier,
    "extra_trees_classifier": ExtraTreesClassifier,
    "ridge": Ridge,
    "linear_regression": LinearRegression,
    "random_forest_regressor": RandomForestRegressor,
    "hist_gradient_boosting_regressor": HistGradientBoostingRegressor,
    "extra_trees_regressor": ExtraTreesRegressor,
}
LINEAR = frozenset({"logistic_regression", "ridge", "linear_regression"})
IMPUTATION = {"median": "median", "mean": "mean", "zero": "constant"}

BUILTIN_DATA = {
    f"builtins.{name}"
    for name in ("dict", "list", "tuple", "set", "str", "int", "float", "bool", "NoneType", "bytes")
}
# Types skops may rebuild when loading our model files: exactly what our pipelines contain.
TRUSTED_TYPES = sorted(
    {
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.uint64",
        "numpy.random._generator.Generator",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn.preprocessing._label.LabelEncoder",
        "numpy.ndarray",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.compose._column_transformer._RemainderColsList",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.impute._base.SimpleImputer",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.tree._classes.ExtraTreeRegressor",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
        "builtins.slice",
    }
    | {f"{cls.__module__}.{cls.__name__}" for cls in ESTIMATORS.values()}
)


def _estimator(spec: ProjectSpec, candidate: Candidate) -> object:
    cls = ESTIMATORS[str(candidate.estimator)]
    params = dict(candidate.params)
    if "random_state" in inspect.signature(cls).parameters:
        params.setdefault("random_state", spec.training.seed)
    return cls(**params)


def build_pipeline(spec: ProjectSpec, candidate: Candidate) -> Pipeline:
    """Unfitted pipeline: impute (+ scale for linear models) numerics, one-hot categories."""
    feats = layout(spec)
    numeric = [n for n, kind in feats if kind == "numeric"]
    categorical = [n for n, kind in feats if kind == "category"]
    strategy = IMPUTATION[spec.features.numeric_imputation]
    num_steps: list[tuple[str, object]] = [
        (
            "impute",
            SimpleImputer(strategy=strategy, fill_value=0.0 if strategy == "constant" else None),
        )
    ]
    if candidate.estimator in LINEAR:
        num_steps.append(("scale", StandardScaler()))
    transformers = []
    if numeric:
        transformers.append(("numeric", Pipeline(num_steps), numeric))
    if categorical:
        transformers.append(
            ("category", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)
        )
    pre = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("preprocess", pre), ("model", _estimator(spec, candidate))])


def candidate_problems(spec: ProjectSpec) -> list[tuple[str, str]]:
    """Candidate params the estimator does not accept, as (field path, reason)."""
    problems = []
    for i, cand in enumerate(spec.candidates):
        if cand.kind != "sklearn" or cand.estimator not in ESTIMATORS:
            continue  # an unknown estimator is a spec problem of its own
        try:
            pipeline = build_pipeline(spec, cand)
            pipeline.named_steps["model"]._validate_params()  # what fit() would refuse
        except TypeError as exc:
            bad = re.match(r"The '(\w+)' parameter", str(exc))  # sklearn's InvalidParameterError
            where = f"candidates.{i}.params" + (f".{bad.group(1)}" if bad else "")
            problems.append((where, f"{cand.estimator}: {exc}"))
        except (ValueError, KeyError) as exc:
            problems.append((f"candidates.{i}", str(exc)))
        accepted = inspect.signature(ESTIMATORS[str(cand.estimator)]).parameters
        for name in cand.search.space if cand.search else ():
            if name not in accepted:
                problems.append(
                    (
                        f"candidates.{i}.search.space.{name}",
                        f"{cand.estimator} has no parameter {name!r}",
                    )
                )
    return problems


def fit_candidate(train: pd.DataFrame, spec: ProjectSpec, candidate: Candidate) -> Pipeline:
    """Fit one candidate on a training frame (features + target)."""
    pipeline = build_pipeline(spec, candidate)
    X = train[[n for n, _ in layout(spec)]]
    y = train[spec.target].to_numpy()
    if spec.task != "regression":
        y = y.astype(str)
        if len(set(y)) < 2:
            raise ValueError(f"the training window has a single class {y[0]!r}: cannot train")
    pipeline.fit(X, y)
    return pipeline


def save_pipeline(pipeline: Pipeline, path: Path) -> None:
    """Write a fitted pipeline with skops (no pickle), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sio.dump(pipeline, tmp)
    tmp.replace(path)


def skops_types(path: Path) -> set[str]:
    """Every object type a skops file would build (read from its schema, nothing loaded)."""
    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "__class__" in node and "__module__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found - BUILTIN_DATA


def load_pipeline(path: Path) -> Pipeline:
    """Load a skops file, refusing any type outside TRUSTED_TYPES (builtins aside)."""
    untrusted = (skops_types(path) | set(sio.get_untrusted_types(file=path))) - set(TRUSTED_TYPES)
    if untrusted:
        raise ValueError(f"{path}: refusing to load untrusted types {sorted(untrusted)}")
    return sio.load(path, trusted=TRUSTED_TYPES)


class SklearnModel:
    """A fitted pipeline behind the common ``FittedModel`` interface."""

    def __init__(self, pipeline: Pipeline, spec: ProjectSpec):
        self.pipeline = pipeline
        self.spec = spec

    @property
    def classes(self) -> list[str] | None:
        if self.spec.task == "regression":
            return None
        return [str(c) for c in self.pipeline.classes_]

    @property
    def history(self) -> list:
        return []

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        X = features[[n for n, _ in layout(self.spec)]]
        if self.spec.task == "regression":
            return np.asarray(self.pipeline.predict(X), dtype=np.float64)
        return np.asarray(self.pipeline.predict_proba(X), dtype=np.float64)

    def to_onnx(self) -> onnx.ModelProto:
        from mlplatform.steps.sklearn_onnx import pipeline_to_onnx

        return pipeline_to_onnx(self.pipeline, self.spec)

    def save(self, path: Path) -> None:
        save_pipeline(self.pipeline, path)
