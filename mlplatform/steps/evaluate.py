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
from mlplatform.spec import LOWER_IS_BETTER, ProjectSpec

PRODUCTION = "production"
CANDIDATE = "candidate"
BASELINE = "baseline"
# Baseline names hold a "-", which candidate names (``[a-z][a-z0-9_]*``) cannot.
PRIOR = "baseline-prior"
MEAN = "baseline-mean"
LAST = "baseline-last"
SEASONAL = "baseline-seasonal"
# A holdout primary metric this good is implausible on real data (a leak, a target copy):
# at least these for higher-is-better metrics, at most these for lower-is-better ones.
PERFECT_AT_LEAST = {
    "roc_auc": 0.999,
    "pr_auc": 0.999,
    "accuracy": 0.999,
    "balanced_accuracy": 0.999,
    "f1": 0.999,
    "r2": 0.999,
}
PERFECT_AT_MOST = {"log_loss": 0.001, "rmse": 0.0, "mae": 0.0}


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
class GateResult:
    """One gate applied to one model; relative gates name the best baseline and the lift."""

    metric: str
    value: float
    min: float | None
    max: float | None
    passed: bool
    min_lift: float | None = None
    beat_baseline: bool = False
    baseline: str | None = None
    baseline_value: float | None = None
    lift: float | None = None

    def why(self) -> str:
        """Why the gate failed (or what it checked), as one line."""
        parts = []
        inside = math.isfinite(self.value)
        inside = inside and (self.min is None or self.value >= self.min)
        inside = inside and (self.max is None or self.value <= self.max)
        if (self.min is not None or self.max is not None) and not inside:
            parts.append(f"{self.metric}={self.value:.4f} outside [{self.min}, {self.max}]")
        if self.min_lift is not None or self.beat_baseline:
            if self.baseline is None:
                parts.append(f"{self.metric}: no baseline score to compare with")
            elif self.lift is None or self.baseline_value is None:
                parts.append(f"{self.metric} is undefined on this holdout")
            else:
                need = [f"min_lift={self.min_lift}"] * (self.min_lift is not None)
                need += ["beat_baseline"] * self.beat_baseline
                parts.append(
                    f"{self.metric}={self.value:.4f} vs {self.baseline}="
                    f"{self.baseline_value:.4f}: lift {self.lift:+.4f} ({', '.join(need)})"
                )
        return "; ".join(parts)


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


def best_baseline(
    baselines: Mapping[str, Mapping[str, float]], metric: str
) -> tuple[str, float] | None:
    """The baseline with the best finite value of ``metric`` (and that value)."""
    best: tuple[str, float] | None = None
    for name, metrics in baselines.items():
        value = metrics.get(metric, float("nan"))
        if math.isfinite(value) and (best is None or better(value, best[1], metric)):
            best = (name, value)
    return best


def lift(value: float, reference: float, metric: str) -> float:
    """How much better ``value`` is than ``reference`` (positive = better), direction-aware."""
    return reference - value if metric in LOWER_IS_BETTER else value - reference


def gate_results(
    metrics: Mapping[str, float],
    spec: ProjectSpec,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
) -> list[GateResult]:
    """Each of the spec's gates applied to one model's metrics (NaN fails); ``min_lift`` and
    ``beat_baseline`` compare with the best of ``baselines`` on the gate's metric, and fail
    when there is no baseline score."""
    results = []
    for gate in spec.evaluation.gates:
        value = metrics.get(gate.metric, float("nan"))
        ok = math.isfinite(value)
        ok = ok and (gate.min is None or value >= gate.min)
        ok = ok and (gate.max is None or value <= gate.max)
        result = GateResult(
            gate.metric, value, gate.min, gate.max, ok, gate.min_lift, gate.beat_baseline
        )
        if gate.min_lift is not None or gate.beat_baseline:
            best = best_baseline(baselines or {}, gate.metric)
            if best is None:
                result.passed = False
            else:
                result.baseline, result.baseline_value = best
                result.lift = lift(value, best[1], gate.metric) if math.isfinite(value) else None
                gained = result.lift if result.lift is not None else float("nan")
                result.passed = result.passed and math.isfinite(gained)
                result.passed = result.passed and (gate.min_lift is None or gained >= gate.min_lift)
                result.passed = result.passed and (not gate.beat_baseline or gained > 0)
        results.append(result)
    return results


def implausibly_perfect(metrics: Mapping[str, float], spec: ProjectSpec) -> str | None:
    """Why a holdout score is too good to be true, or None: the primary metric at or beyond
    PERFECT_AT_LEAST / PERFECT_AT_MOST, or (regression) an r2 at or above its threshold."""
    names = [spec.evaluation.primary_metric] + ["r2"] * (spec.task == "regression")
    for metric in dict.fromkeys(names):
        value = metrics.get(metric, float("nan"))
        if not math.isfinite(value):
            continue
        if metric in PERFECT_AT_LEAST and value >= PERFECT_AT_LEAST[metric]:
            bound = f">= {PERFECT_AT_LEAST[metric]}"
        elif metric in PERFECT_AT_MOST and value <= PERFECT_AT_MOST[metric]:
            bound = f"<= {PERFECT_AT_MOST[metric]}"
        else:
            continue
        return (
            f"implausibly perfect: holdout {metric}={value:.4f} ({bound}); look for a leak "
            "(a feature that encodes the target)"
        )
    return None


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


def better(a: float, b: float, metric: str) -> bool:
    """Is metric value a strictly better than b?"""
    return a < b if metric in LOWER_IS_BETTER else a > b


def regression_vs(candidate: float, production: float, metric: str) -> float:
    """How much worse candidate is than production (positive = worse)."""
    return candidate - production if metric in LOWER_IS_BETTER else production - candidate


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
