"""Score candidates, production and baselines on the out-of-time holdout, apply gates, pick a
winner."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlplatform.columns import MISSING_CATEGORY
from mlplatform.spec import ProjectSpec
from mlplatform.steps.gates import (
    GateResult,
    better,
    gate_results,
    implausibly_perfect,
    regression_vs,
)

PRODUCTION = "production"
CANDIDATE = "candidate"
BASELINE = "baseline"


@dataclass(frozen=True)
class Prediction:
    """What a model says about holdout rows: class probabilities or regression values."""

    classes: list[str] | None = None
    proba: np.ndarray | None = None
    values: np.ndarray | None = None

    def labels(self) -> np.ndarray:
        assert self.proba is not None and self.classes is not None
        return np.asarray(self.classes, dtype=object)[np.argmax(self.proba, axis=1)]


Predictor = Callable[[pd.DataFrame], Prediction]


@dataclass
class ProductionEntry:
    """Production's place in one evaluation: scored beside the candidates, or why not."""

    bundle_id: str | None
    comparable: bool
    note: str


@dataclass
class ModelScores:
    """Holdout metrics of one model, per slice too, and the data behind the report's plots."""

    name: str
    metrics: dict[str, float]
    slices: dict[str, dict[str, float]]
    gates: list[GateResult]
    confusion: dict[str, object] | None = None
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    residuals: dict[str, list[float]] | None = None
    kind: str = CANDIDATE
    notes: list[str] = field(default_factory=list)

    @property
    def passed_gates(self) -> bool:
        return all(g.passed for g in self.gates)


@dataclass
class EvaluationResult:
    """Every model scored on the holdout of one cutoff, and the winner (None if none qualifies)."""

    cutoff: str
    task: str
    primary_metric: str
    holdout_rows: int
    models: dict[str, ModelScores]
    winner: str | None
    reasons: list[str]
    production: ProductionEntry | None = None

    def to_json(self) -> dict[str, object]:
        return {k: _finite(v) for k, v in asdict(self).items()}


def _finite(obj: object) -> object:
    """JSON-safe: NaN/inf become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _safe(fn: Callable[[], float]) -> float:
    try:
        return float(fn())
    except ValueError:
        return float("nan")


def classification_metrics(y: np.ndarray, pred: Prediction, task: str) -> dict[str, float]:
    """roc_auc, pr_auc, log_loss, accuracy, balanced_accuracy, f1 (macro for multiclass)."""
    assert pred.proba is not None and pred.classes is not None
    classes = list(pred.classes)
    proba = np.clip(pred.proba, 1e-15, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    labels = pred.labels()
    out = {
        "accuracy": float(skm.accuracy_score(y, labels)),
        "balanced_accuracy": _safe(lambda: skm.balanced_accuracy_score(y, labels)),
        "log_loss": _safe(lambda: skm.log_loss(y, proba, labels=classes)),
    }
    if task == "binary":
        pos = classes[1]
        out["roc_auc"] = _safe(lambda: skm.roc_auc_score(y == pos, proba[:, 1]))
        out["pr_auc"] = _safe(lambda: skm.average_precision_score(y == pos, proba[:, 1]))
        out["f1"] = float(skm.f1_score(y == pos, labels == pos, zero_division=0))
    else:
        onehot = (y[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(int)
        out["roc_auc"] = _safe(
            lambda: skm.roc_auc_score(onehot, proba, average="macro", multi_class="ovr")
        )
        out["pr_auc"] = _safe(lambda: skm.average_precision_score(onehot, proba, average="macro"))
        out["f1"] = float(skm.f1_score(y, labels, average="macro", zero_division=0))
    return out


def regression_metrics(y: np.ndarray, pred: Prediction) -> dict[str, float]:
    """rmse, mae, r2."""
    assert pred.values is not None
    v = pred.values
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, v))),
        "mae": float(skm.mean_absolute_error(y, v)),
        "r2": _safe(lambda: skm.r2_score(y, v)),
    }


def score(y: np.ndarray, pred: Prediction, task: str) -> dict[str, float]:
    if task == "regression":
        return regression_metrics(np.asarray(y, dtype=np.float64), pred)
    return classification_metrics(np.asarray(y, dtype=object), pred, task)


def _plots(y: np.ndarray, pred: Prediction, task: str, scores: ModelScores) -> None:
    if task == "regression":
        assert pred.values is not None
        take = np.linspace(0, len(y) - 1, min(len(y), 2000)).astype(int)
        scores.residuals = {
            "actual": [float(v) for v in np.asarray(y, dtype=np.float64)[take]],
            "predicted": [float(v) for v in pred.values[take]],
        }
        return
    assert pred.classes is not None and pred.proba is not None
    labels = pred.labels()
    cm = skm.confusion_matrix(y, labels, labels=pred.classes)
    scores.confusion = {"labels": list(pred.classes), "matrix": cm.tolist()}
    positives = [pred.classes[1]] if task == "binary" else list(pred.classes)
    for cls in positives:
        i = pred.classes.index(cls)
        truth = y == cls
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = skm.roc_curve(truth, pred.proba[:, i])
        prec, rec, _ = skm.precision_recall_curve(truth, pred.proba[:, i])
        scores.curves[str(cls)] = {
            "fpr": _thin(fpr),
            "tpr": _thin(tpr),
            "precision": _thin(prec),
            "recall": _thin(rec),
        }


def _thin(values: np.ndarray, points: int = 200) -> list[float]:
    idx = np.unique(np.linspace(0, len(values) - 1, min(points, len(values))).astype(int))
    return [float(v) for v in values[idx]]


def _scores(
    name: str, kind: str, y: np.ndarray, pred: Prediction, holdout: pd.DataFrame, spec: ProjectSpec
) -> ModelScores:
    metrics = score(y, pred, spec.task)
    slices: dict[str, dict[str, float]] = {}
    if spec.training.slice_column and spec.training.slice_column in holdout:
        col = holdout[spec.training.slice_column].to_numpy(dtype=object)
        for value in sorted({str(v) for v in col}):
            mask = col == value
            label = "(missing)" if value == MISSING_CATEGORY else value
            sub = Prediction(
                pred.classes,
                None if pred.proba is None else pred.proba[mask],
                None if pred.values is None else pred.values[mask],
            )
            slices[label] = {"rows": float(mask.sum()), **score(y[mask], sub, spec.task)}
    scores = ModelScores(name, metrics, slices, [], kind=kind)
    _plots(y, pred, spec.task, scores)
    return scores


def evaluate(
    holdout: pd.DataFrame,
    predictors: Mapping[str, Predictor],
    spec: ProjectSpec,
    cutoff: str,
    baselines: Mapping[str, Predictor] | None = None,
    production: ProductionEntry | None = None,
) -> EvaluationResult:
    """Score every predictor and baseline on the holdout; the winner is the best candidate that
    passes all gates, is no worse than production (when ``PRODUCTION`` is among the predictors)
    by more than ``evaluation.max_regression``, is not implausibly perfect (unless
    ``evaluation.allow_perfect``), on a holdout of at least ``evaluation.min_holdout_rows``.
    Baselines are scored and used by relative gates but never win."""
    y = holdout[spec.target].to_numpy()
    metric = spec.evaluation.primary_metric
    models: dict[str, ModelScores] = {}
    for name, predict in (baselines or {}).items():
        models[name] = _scores(name, BASELINE, y, predict(holdout), holdout, spec)
    reference = {n: s.metrics for n, s in models.items()}
    for name, predict in predictors.items():
        kind = PRODUCTION if name == PRODUCTION else CANDIDATE
        scores = _scores(name, kind, y, predict(holdout), holdout, spec)
        scores.gates = gate_results(scores.metrics, spec, reference)
        flag = implausibly_perfect(scores.metrics, spec) if kind == CANDIDATE else None
        if flag:
            scores.notes.append(flag)
        models[name] = scores
    winner, reasons = choose_winner(models, spec, len(holdout))
    if production is not None and not production.comparable and production.bundle_id:
        reasons.append(
            f"production {production.bundle_id[:12]}: {production.note}; "
            "evaluation.max_regression does not apply"
        )
    return EvaluationResult(
        cutoff, spec.task, metric, len(holdout), models, winner, reasons, production
    )


def choose_winner(
    models: Mapping[str, ModelScores], spec: ProjectSpec, holdout_rows: int | None = None
) -> tuple[str | None, list[str]]:
    """Best candidate by the primary metric among those that qualify, and why others did not
    (baselines and production never win)."""
    metric = spec.evaluation.primary_metric
    reasons: list[str] = []
    best: str | None = None
    prod = models.get(PRODUCTION)
    for name, scores in models.items():
        if name == PRODUCTION or scores.kind != CANDIDATE:
            continue
        value = scores.metrics.get(metric, float("nan"))
        failed = [g for g in scores.gates if not g.passed]
        if failed:
            reasons += [f"{name}: gate {g.why()}" for g in failed]
            continue
        if not math.isfinite(value):
            reasons.append(f"{name}: {metric} is undefined on this holdout")
            continue
        flag = implausibly_perfect(scores.metrics, spec)
        if flag and not spec.evaluation.allow_perfect:
            reasons.append(
                f"{name}: {flag}; not a winner (set evaluation.allow_perfect: true once it is "
                "explained)"
            )
            continue
        if flag:
            reasons.append(f"{name}: {flag}; may win: evaluation.allow_perfect is true")
        if prod is not None:
            gap = regression_vs(value, prod.metrics.get(metric, float("nan")), metric)
            if gap > spec.evaluation.max_regression:
                reasons.append(
                    f"{name}: {metric} worse than production by {gap:.4f} "
                    f"(> evaluation.max_regression={spec.evaluation.max_regression})"
                )
                continue
        if best is None or better(value, models[best].metrics[metric], metric):
            best = name
    least = spec.evaluation.min_holdout_rows
    if holdout_rows is not None and holdout_rows < least:
        reasons.insert(
            0,
            f"holdout has {holdout_rows} rows, fewer than evaluation.min_holdout_rows={least}: "
            "too few to decide a winner (lower the field or use longer partitions)",
        )
        best = None
    return best, reasons
