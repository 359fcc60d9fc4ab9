"""Cleaned, typed model features of one partition, and the checks that guard them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlplatform.columns import MISSING_CATEGORY, FeatureKind, derive_features, feature_layout
from mlplatform.spec import ProjectSpec

LEAKAGE_CORRELATION = 0.98
LEAKAGE_PURITY = 0.995


def layout(spec: ProjectSpec) -> list[tuple[str, FeatureKind]]:
    """The model's input features as (name, numeric|category), in graph input order."""
    return feature_layout(spec.columns, spec.features, spec.feature_columns)


def target_values(values: pd.Series, spec: ProjectSpec) -> np.ndarray:
    """Target as float (regression) or str class labels (classification); None if missing."""
    col = spec.columns[spec.target]
    arr = values.to_numpy(dtype=object)
    if spec.task == "regression":
        return np.asarray(values, dtype=np.float64)
    if col.type == "bool":
        return np.array([None if v != v else ("true" if v else "false") for v in arr], dtype=object)
    if col.type == "int":
        return np.array([None if v != v else str(int(v)) for v in arr], dtype=object)
    return np.array([None if v is None or v != v else str(v) for v in arr], dtype=object)


def build_features(raw: pd.DataFrame, spec: ProjectSpec) -> pd.DataFrame:
    """Feature columns (layout order) plus the target; rows without a target are dropped."""
    parsed = {name: raw[name].to_numpy() for name in spec.feature_columns}
    feats = derive_features(parsed, spec.columns, spec.features, spec.feature_columns)
    frame = pd.DataFrame(feats)
    frame[spec.target] = target_values(raw[spec.target], spec)
    keep = frame[spec.target].notna().to_numpy()
    return frame.loc[keep].reset_index(drop=True)


def leakage_findings(frame: pd.DataFrame, spec: ProjectSpec) -> list[str]:
    """Features that give the target away: declared non-features, or near-perfect predictors."""
    expected = {name for name, _ in layout(spec)} | {spec.target}
    findings = [
        f"column {c!r} is not a declared feature (target, id or excluded column leaked in)"
        for c in frame.columns
        if c not in expected
    ]
    y = frame[spec.target]
    if len(frame) < 20 or y.nunique() < 2:
        return findings
    targets = (
        {"target": y.to_numpy(dtype=np.float64)}
        if spec.task == "regression"
        else {f"target={c}": (y == c).to_numpy(dtype=np.float64) for c in y.unique()}
    )
    majority = y.value_counts(normalize=True).iloc[0]
    for name, kind in layout(spec):
        x = frame[name]
        if kind == "numeric":
            xs = x.to_numpy(dtype=np.float64)
            ok = ~np.isnan(xs)
            if ok.sum() < 20 or np.nanstd(xs) == 0:
                continue
            for label, t in targets.items():
                if np.std(t[ok]) == 0:
                    continue
                r = float(np.corrcoef(xs[ok], t[ok])[0, 1])
                if abs(r) >= LEAKAGE_CORRELATION:
                    findings.append(f"feature {name!r} correlates {r:+.3f} with {label}")
        elif spec.task != "regression" and majority < LEAKAGE_PURITY:
            purity = frame.groupby(name)[spec.target].agg(
                lambda s: s.value_counts(normalize=True).iloc[0]
            )
            weights = x.value_counts(normalize=True)
            score = float((purity * weights.reindex(purity.index)).sum())
            if x.nunique() > 1 and score >= LEAKAGE_PURITY:
                findings.append(f"feature {name!r} determines the target in {score:.1%} of rows")
    return findings


def empty_features(frame: pd.DataFrame, spec: ProjectSpec) -> list[str]:
    """Features with no value at all in this partition."""
    out = []
    for name, kind in layout(spec):
        col = frame[name]
        empty = (col == MISSING_CATEGORY).all() if kind == "category" else col.isna().all()
        if empty:
            out.append(name)
    return out
