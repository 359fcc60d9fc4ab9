"""Live monitoring of one day of the prediction log: input drift against the production
bundle's training window (the drift check's own PSI/share/missingness code), the shift of the
predictions, traffic and latency, and production's decay once labels have landed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlplatform.bundles.format import Bundle
from mlplatform.columns import derive_features, parse_column
from mlplatform.prediction_log import INPUT_PREFIX, PROBA_PREFIX, LogStore
from mlplatform.spec import LOWER_IS_BETTER, ProjectSpec
from mlplatform.steps import drift as drift_steps
from mlplatform.steps.drift import FeatureDrift
from mlplatform.steps.evaluate import Prediction, score
from mlplatform.steps.features import layout

REFERENCE_ROWS = 50_000  # training-window rows predicted for the prediction-shift reference


def read_days(store: LogStore, project: str, first: dt.date, end: dt.date) -> pd.DataFrame:
    """Every logged row of the UTC days from ``first`` up to ``end`` (exclusive; not past
    today); empty when nothing was logged."""
    last = min(end, dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1))
    days = [first + dt.timedelta(days=n) for n in range(max(0, (last - first).days))]
    files = [p for day in days for p in store.day_files(project, day)]
    frames = [store.read(p).to_pandas() for p in files]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def main_bundle(log: pd.DataFrame) -> str:
    """The bundle that answered most logged rows."""
    return str(log["bundle_id"].value_counts().idxmax())


def logged_features(spec: ProjectSpec, log: pd.DataFrame) -> list[str]:
    """Feature columns whose inputs are in the log (``monitoring.log.columns``)."""
    return [c for c in spec.feature_columns if INPUT_PREFIX + c in log]


def live_features(log: pd.DataFrame, spec: ProjectSpec) -> pd.DataFrame:
    """Model features of logged inputs, parsed and derived exactly as training does; a feature
    column that was not logged is all missing (and is not compared, see ``live_drift``)."""
    n = len(log)
    parsed = {}
    for name in spec.feature_columns:
        values = (
            log[INPUT_PREFIX + name].to_numpy(dtype=object)
            if INPUT_PREFIX + name in log
            else np.full(n, None, dtype=object)
        )
        parsed[name] = parse_column(values, spec.columns[name]).values
    return pd.DataFrame(derive_features(parsed, spec.columns, spec.features, spec.feature_columns))


def _feature_of(spec: ProjectSpec) -> dict[str, str]:
    """Model feature name -> the raw column it comes from (a date part: its date column)."""
    out = {c: c for c in spec.feature_columns}
    for column, parts in spec.features.date_parts.items():
        out.update({f"{column}_{part}": column for part in parts})
    return out


def live_drift(
    reference: pd.DataFrame,
    live: pd.DataFrame,
    spec: ProjectSpec,
    logged: list[str],
    period: tuple[dt.date, dt.date],
) -> tuple[list[FeatureDrift], list[str]]:
    """Drift of the live features against the training window and the features not compared
    (columns not logged; date parts that restate the period: first day, day after the last)."""
    origin = _feature_of(spec)
    unlogged = [n for n, _ in layout(spec) if origin.get(n) not in logged]
    skip = unlogged + drift_steps.key_features(live, spec, period)
    found = drift_steps.feature_drift(reference, live, spec, skip=skip)
    found += [d for d in drift_steps.missing_changes(reference, live, spec) if d.feature in logged]
    return found, skip


@dataclass(frozen=True)
class PredictionShift:
    kind: str  # "share" (predicted labels), "psi" (regression values)
    value: float
    threshold: float
    detail: str

    @property
    def shifted(self) -> bool:
        return self.value > self.threshold


def prediction_shift(
    bundle: Bundle, reference: pd.DataFrame, log: pd.DataFrame, spec: ProjectSpec
) -> PredictionShift:
    """Logged predictions against the bundle's own predictions on its training window:
    the largest change of a predicted label's share, or the PSI of predicted values."""
    if len(reference) > REFERENCE_ROWS:
        reference = reference.sample(REFERENCE_ROWS, random_state=0)
    features = {name: reference[name].to_numpy() for name, _ in layout(spec)}
    out = bundle.predict_features(features)
    if bundle.classes is None:
        value = drift_steps.psi(out, log["value"].to_numpy(dtype=np.float64))
        threshold = spec.drift.psi_threshold
        return PredictionShift("psi", value, threshold, f"PSI of predicted values {value:.3f}")
    labels = np.asarray(bundle.classes, dtype=object)[np.argmax(out, axis=1)]
    value, top = drift_steps.share_change(pd.Series(labels), log["label"].astype(str))
    return PredictionShift(
        "share",
        value,
        spec.drift.share_threshold,
        f"share of predicted {top!r} moved by {value:.1%}",
    )


def traffic(log: pd.DataFrame) -> dict[str, float]:
    """Requests, rows and request latency percentiles (ms) of the logged sample."""
    if log.empty:
        return {"requests": 0, "rows": 0}
    per_request = log.drop_duplicates("request")["latency_ms"].to_numpy(dtype=np.float64)
    p50, p95, p99 = np.percentile(per_request, [50, 95, 99])
    return {
        "requests": len(per_request),
        "rows": len(log),
        "latency_p50_ms": round(float(p50), 3),
        "latency_p95_ms": round(float(p95), 3),
        "latency_p99_ms": round(float(p99), 3),
        "latency_max_ms": round(float(per_request.max()), 3),
    }


@dataclass(frozen=True)
class Decay:
    metric: str
    live: float
    holdout: float
    rows: int
    threshold: float

    @property
    def drop(self) -> float:
        """How much worse than on the holdout (positive = worse), whatever the direction."""
        if self.metric in LOWER_IS_BETTER:
            return self.live - self.holdout
        return self.holdout - self.live

    @property
    def decayed(self) -> bool:
        return not self.drop <= self.threshold  # a NaN metric counts as decayed

    def describe(self) -> str:
        return (
            f"{self.metric} {self.live:.4f} on {self.rows} labelled rows vs {self.holdout:.4f} on "
            f"the holdout: {'worse' if self.drop > 0 else 'better'} by {abs(self.drop):.4f} "
            f"(threshold {self.threshold})"
        )


def decay(bundle: Bundle, labelled: pd.DataFrame, spec: ProjectSpec) -> Decay:
    """The bundle's primary metric on newly labelled features vs its holdout metric."""
    manifest: dict[str, Any] = bundle.manifest
    metric = str(manifest.get("primary_metric") or spec.evaluation.primary_metric)
    features = {name: labelled[name].to_numpy() for name, _ in layout(spec)}
    out = bundle.predict_features(features)
    y = labelled[spec.target].to_numpy()
    if bundle.classes is None:
        pred = Prediction(values=out)
    else:
        pred = Prediction(classes=list(bundle.classes), proba=out)
    live = score(y, pred, spec.task)[metric]
    holdout = float(manifest["metrics"][metric])
    return Decay(metric, float(live), holdout, len(labelled), spec.monitoring.decay.threshold)


def class_shares(log: pd.DataFrame) -> dict[str, float]:
    """Share of each predicted label (classification) in the log."""
    if "label" not in log or log["label"].isna().all():
        return {}
    shares = log["label"].astype(str).value_counts(normalize=True)
    return {str(k): round(float(v), 4) for k, v in shares.items()}


def mean_probabilities(log: pd.DataFrame) -> dict[str, float]:
    return {
        c.removeprefix(PROBA_PREFIX): round(float(log[c].mean()), 4)
        for c in log.columns
        if c.startswith(PROBA_PREFIX)
    }
