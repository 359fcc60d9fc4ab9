"""Feature drift of one partition against a reference window: PSI and category-share change."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from mlplatform.spec import Drift, ProjectSpec
from mlplatform.steps.features import layout

EPSILON = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # "psi" for numeric features, "share" for categorical ones
    value: float
    threshold: float
    detail: str

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index over reference-quantile bins; missing values get a bin."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(ref_ok) == 0 or len(cur) == 0 or len(ref) == 0:
        return 0.0
    edges = np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.append(
        np.bincount(np.searchsorted(edges, ref_ok, side="right"), minlength=len(edges) + 1),
        np.isnan(ref).sum(),
    )
    cur_counts = np.append(
        np.bincount(np.searchsorted(edges, cur_ok, side="right"), minlength=len(edges) + 1),
        np.isnan(cur).sum(),
    )
    p = np.maximum(ref_counts / len(ref), EPSILON)
    q = np.maximum(cur_counts / len(cur), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def share_change(reference: pd.Series, current: pd.Series) -> tuple[float, str]:
    """Largest absolute change in any category's share, and that category."""
    ref = reference.astype(str).value_counts(normalize=True)
    cur = current.astype(str).value_counts(normalize=True)
    diff = cur.reindex(ref.index.union(cur.index), fill_value=0.0) - ref.reindex(
        ref.index.union(cur.index), fill_value=0.0
    )
    if diff.empty:
        return 0.0, ""
    top = str(diff.abs().idxmax())
    return float(abs(diff[top])), top


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, spec: ProjectSpec, rules: Drift | None = None
) -> list[FeatureDrift]:
    """Drift of every feature of ``current`` against ``reference`` (e.g. its training window)."""
    rules = rules or spec.drift
    out = []
    for name, kind in layout(spec):
        if kind == "numeric":
            value = psi(reference[name].to_numpy(), current[name].to_numpy())
            out.append(FeatureDrift(name, "psi", value, rules.psi_threshold, f"PSI {value:.3f}"))
        else:
            value, top = share_change(reference[name], current[name])
            out.append(
                FeatureDrift(
                    name,
                    "share",
                    value,
                    rules.share_threshold,
                    f"share of {top!r} moved by {value:.1%}",
                )
            )
    return out


def drift_summary(drifts: list[FeatureDrift]) -> dict[str, dict[str, object]]:
    return {d.feature: {**asdict(d), "drifted": d.drifted} for d in drifts}
