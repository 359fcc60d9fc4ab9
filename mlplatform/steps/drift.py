"""Feature drift of one partition against a reference window: PSI, category-share change and
change of the missing share; date parts that only restate the partition key are not compared."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from mlplatform.columns import MISSING_CATEGORY, FeatureKind, date_part
from mlplatform.spec import Drift, ProjectSpec
from mlplatform.steps.features import layout

EPSILON = 1e-4
# Date parts as coarse as the partition period or coarser, per granularity: on the column that
# dates the rows they hold the period's own value(s), so they differ from any earlier window.
KEY_PARTS = {
    "daily": ("year", "quarter", "month", "day", "dayofweek", "dayofyear"),
    "weekly": ("year", "quarter", "month"),
    "monthly": ("year", "quarter", "month"),
}
KEY_SHARE = 0.95  # share of a part's values inside the period that marks it as the key's part


class Columns(Protocol):
    """A reference window by column: a DataFrame, or ``WindowFiles`` (one column read at a
    time from the partitions' files)."""

    def __getitem__(self, name: str) -> pd.Series: ...


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


def key_features(
    current: pd.DataFrame, spec: ProjectSpec, period: tuple[dt.date, dt.date]
) -> list[str]:
    """Date-part features that restate the partition key: a part at least as coarse as the
    granularity (e.g. ``date_month`` in monthly partitions) whose values in ``current`` lie,
    for at least ``KEY_SHARE`` of its rows, among the values that part takes in ``period``
    (start inclusive, end exclusive)."""
    days = np.arange(np.datetime64(period[0], "D"), np.datetime64(period[1], "D"))
    out = []
    for col, parts in spec.features.date_parts.items():
        if col not in spec.feature_columns:
            continue
        for part in parts:
            name = f"{col}_{part}"
            if part not in KEY_PARTS[spec.partitions.granularity] or name not in current:
                continue
            values = current[name].to_numpy(dtype=np.float64)
            values = values[~np.isnan(values)]
            inside = np.isin(values, np.unique(date_part(days, part)))
            if len(values) and inside.mean() >= KEY_SHARE:
                out.append(name)
    return out


def missing_share(values: pd.Series, kind: FeatureKind) -> float:
    """Share of missing values in one feature column (a missing category is a level)."""
    if len(values) == 0:
        return 0.0
    if kind == "category":
        return float((values == MISSING_CATEGORY).mean())
    return float(values.isna().mean())


def missing_changes(
    reference: Columns, current: pd.DataFrame, spec: ProjectSpec, rules: Drift | None = None
) -> list[FeatureDrift]:
    """Change of each raw feature column's missing share (a date column: via its first part)."""
    rules = rules or spec.drift
    out = []
    for column in spec.feature_columns:
        name = column
        if spec.columns[column].type == "date":
            parts = spec.features.date_parts.get(column, ())
            if not parts:
                continue  # a date column without parts is no feature
            name = f"{column}_{parts[0]}"
        kind: FeatureKind = "category" if spec.columns[column].type == "category" else "numeric"
        before, now = missing_share(reference[name], kind), missing_share(current[name], kind)
        out.append(
            FeatureDrift(
                column,
                "missing",
                abs(now - before),
                rules.missing_threshold,
                f"missing share {before:.1%} -> {now:.1%}",
            )
        )
    return out


def feature_drift(
    reference: Columns,
    current: pd.DataFrame,
    spec: ProjectSpec,
    rules: Drift | None = None,
    skip: Collection[str] = (),
) -> list[FeatureDrift]:
    """Drift of every feature of ``current`` against ``reference`` (e.g. its training window),
    except the features in ``skip`` (see ``key_features``)."""
    rules = rules or spec.drift
    out = []
    for name, kind in layout(spec):
        if name in skip:
            continue
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
