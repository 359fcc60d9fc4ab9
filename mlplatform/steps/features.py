"""Cleaned, typed model features of one partition, and the checks that guard them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlplatform.columnar.column_threads import column_map
from mlplatform.columns import MISSING_CATEGORY, FeatureKind, derive_features, feature_layout
from mlplatform.spec import ProjectSpec

# A single feature is a leak when on its own, on one partition, it reaches any of these.
LEAKAGE_CORRELATION = 0.98  # |Pearson r| with a regression target
LEAKAGE_PURITY = 0.995  # accuracy of a one-feature tree, or category purity (classification)
LEAKAGE_AUC = 0.999  # max(AUC, 1 - AUC) of the raw values for one class vs the rest
LEAKAGE_R2 = 0.99  # in-sample R² of a one-feature tree (regression)
LEAKAGE_ERROR_SHARE = 0.1  # the tree's errors as a share of always guessing the majority
LEAKAGE_TREE_DEPTH = {"classification": 4, "regression": 6}
LEAKAGE_MIN_CLASS_ROWS = 10  # rows of a class (and of the rest) before its AUC counts
LEAKAGE_TREE_ROWS = 50_000  # larger partitions fit the tree on a seeded sample
SMALL_RANGE = 1 << 16  # whole numbers ranked by counting when their range is below it


def layout(spec: ProjectSpec) -> list[tuple[str, FeatureKind]]:
    """The model's input features as (name, numeric|category), in graph input order."""
    return feature_layout(spec.columns, spec.features, spec.feature_columns)


def target_values(
    values: pd.Series, spec: ProjectSpec
) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """Target as float (regression) or str class labels (classification); missing where
    missing. A category target keeps its (Arrow) strings: no Python object per row."""
    col = spec.columns[spec.target]
    if spec.task == "regression":
        return np.asarray(values, dtype=np.float64)
    if col.type == "bool":
        arr = values.to_numpy(dtype=object)
        return np.array([None if v != v else ("true" if v else "false") for v in arr], dtype=object)
    if col.type == "int":
        arr = values.to_numpy(dtype=object)
        return np.array([None if v != v else str(int(v)) for v in arr], dtype=object)
    if isinstance(values.dtype, pd.StringDtype):
        return values.array
    text = values.to_numpy(dtype=object, copy=True)  # category: text, NaN where missing
    text[pd.isna(text)] = None
    return text


def build_features(raw: pd.DataFrame, spec: ProjectSpec) -> pd.DataFrame:
    """Feature columns (layout order) plus the target; rows without a target are dropped."""
    # Category columns stay Arrow strings (``derive_features``' rule: missing -> MISSING_CATEGORY)
    # instead of a Python object per cell; the rest goes through derive_features.
    categories = [c for c in spec.feature_columns if spec.columns[c].type == "category"]
    others = [c for c in spec.feature_columns if c not in categories]
    parsed = {name: raw[name].to_numpy() for name in others}
    feats: dict[str, object] = dict(derive_features(parsed, spec.columns, spec.features, others))
    del parsed
    for name in categories:
        feats[name] = _filled_text(raw[name].astype("str"))
    target = target_values(raw[spec.target], spec)
    keep = pd.notna(target)
    columns = {name: feats.pop(name) for name, _ in layout(spec)}
    columns[spec.target] = target
    if not keep.all():  # each column once, instead of the whole frame again
        columns = {name: values[keep] for name, values in columns.items()}  # type: ignore[index]
    return pd.DataFrame(columns, copy=False)


def _filled_text(text: pd.Series) -> pd.api.extensions.ExtensionArray:
    """Category text with its missing cells as MISSING_CATEGORY; Arrow-backed text is filled
    by Arrow (pandas' fillna took 6x as long: 50 ms per 1M cells)."""
    values = text.array
    if not text.hasnans:
        return values
    if isinstance(values, pd.arrays.ArrowStringArray):
        filled = pc.fill_null(pa.array(values), MISSING_CATEGORY)
        return pd.array(filled, dtype=text.dtype)
    return text.fillna(MISSING_CATEGORY).array


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of ``x`` (no NaN) from 1, ties sharing their average rank: pandas'
    ``rank(method="average")``. Rows are grouped by value with a hash table and only the
    distinct values are sorted: features with few values (counts, flags, date parts) need no
    sort of every row; whole numbers in a short range (counts, flags, date parts) are their own
    groups, counted without hashing."""
    small = _small_whole_numbers(x)
    if small is not None:
        codes, counts = small
        ends = np.cumsum(counts)
        return ((ends - counts + ends + 1) / 2.0)[codes]
    groups, values = pd.factorize(x)
    order = np.argsort(np.asarray(values), kind="stable")
    counts = np.bincount(groups, minlength=len(values))[order]
    ends = np.cumsum(counts)
    rank_of_group = np.empty(len(values), dtype=np.float64)
    rank_of_group[order] = (ends - counts + ends + 1) / 2.0
    return rank_of_group[groups]


def _small_whole_numbers(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Each value's offset from the smallest and the count of every offset, when ``x`` holds
    only whole numbers less than SMALL_RANGE apart; otherwise None."""
    if not len(x):
        return None
    lo, hi = x.min(), x.max()
    if not hi - lo < SMALL_RANGE or not np.array_equal(x, np.floor(x)):
        return None
    codes = (x - lo).astype(np.int64)
    return codes, np.bincount(codes)


def rank_auc(x: np.ndarray, positive: np.ndarray, ranks: np.ndarray | None = None) -> float:
    """ROC AUC of ``x`` as a score for ``positive`` (Mann-Whitney; ties count half);
    ``ranks`` of ``x`` when already computed."""
    if ranks is None:
        ranks = average_ranks(np.asarray(x, dtype=np.float64))
    n_pos = int(positive.sum())
    n_neg = len(x) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _impurity(counts: np.ndarray, n: np.ndarray | float, task: str) -> np.ndarray:
    """Gini impurity times rows (classification; ``counts``: class counts) or the sum of squared
    errors (regression; ``counts``: sums of y and y²) of segments with ``n`` rows."""
    if task == "regression":
        return counts[..., 1] - counts[..., 0] ** 2 / n
    return n - (counts**2).sum(axis=-1) / n


def _best_cut(x: np.ndarray, stats: np.ndarray, task: str, min_leaf: int) -> int | None:
    """Where to split one segment of sorted ``x`` (greedy, like a tree node); None: no split."""
    m = len(x)
    cuts = np.arange(min_leaf, m - min_leaf + 1)
    cuts = cuts[x[cuts - 1] < x[cuts]]  # never between equal values
    if not len(cuts):
        return None
    left = np.cumsum(stats, axis=0)[cuts - 1]
    right = stats.sum(axis=0) - left
    cost = _impurity(left, cuts * 1.0, task) + _impurity(right, (m - cuts) * 1.0, task)
    best = int(np.argmin(cost))
    whole = float(_impurity(stats.sum(axis=0), float(m), task))
    return int(cuts[best]) if cost[best] < whole - 1e-12 else None


def one_feature_tree(x: np.ndarray, y: np.ndarray, task: str) -> float:
    """In-sample accuracy (classification) or R² (regression) of a shallow tree on ``x`` alone:
    how well thresholds on one feature (a few bins) reproduce the target. numpy only: it runs
    inside every ``features`` step."""
    if len(x) > LEAKAGE_TREE_ROWS:
        keep = np.random.default_rng(0).choice(len(x), LEAKAGE_TREE_ROWS, replace=False)
        x, y = x[keep], y[keep]
    order = np.argsort(x, kind="stable")
    xs = np.asarray(x, dtype=np.float64)[order]
    if task == "regression":
        t = np.asarray(y, dtype=np.float64)[order]
        t = t - t.mean()  # sums of squares without cancellation
        stats = np.column_stack([t, t**2])
    else:
        labels = np.asarray(y)
        labels = labels if labels.dtype.kind in "iu" else labels.astype(str)  # class codes, or text
        _, codes = np.unique(labels, return_inverse=True)
        stats = np.eye(codes.max() + 1)[codes[order]]
    min_leaf = max(5, len(xs) // 100)  # no leaf for a handful of rows: bins, not points
    segments = [(0, len(xs))]
    for _ in range(LEAKAGE_TREE_DEPTH["regression" if task == "regression" else "classification"]):
        split = []
        for lo, hi in segments:
            cut = _best_cut(xs[lo:hi], stats[lo:hi], task, min_leaf)
            split += [(lo, hi)] if cut is None else [(lo, lo + cut), (lo + cut, hi)]
        segments = split
    sums = np.array([stats[lo:hi].sum(axis=0) for lo, hi in segments])
    if task == "regression":
        sizes = np.array([hi - lo for lo, hi in segments], dtype=np.float64)
        total = float(_impurity(stats.sum(axis=0), float(len(xs)), task))
        return 1.0 - float(_impurity(sums, sizes, task).sum()) / total
    return float(sums.max(axis=1).sum() / len(xs))


def _regression_leak(xs: np.ndarray, t: np.ndarray) -> list[str]:
    """Why one numeric feature (no missing values) gives a regression target away."""
    found: list[str] = []
    if np.std(t) == 0:
        return found
    r = float(np.corrcoef(xs, t)[0, 1])
    if abs(r) >= LEAKAGE_CORRELATION:
        found.append(f"correlation {r:+.3f} with the target")
    r2 = one_feature_tree(xs, t, "regression")
    if r2 >= LEAKAGE_R2:
        found.append(
            f"a one-feature tree of depth {LEAKAGE_TREE_DEPTH['regression']} explains "
            f"R² {r2:.4f} of the target"
        )
    return found


def _class_leak(xs: np.ndarray, codes: np.ndarray, classes: np.ndarray) -> list[str]:
    """Why one numeric feature (no missing values) gives a class target away; ``codes``: the
    index of each row's class in ``classes`` (-1 where missing)."""
    found: list[str] = []
    ranks = average_ranks(xs)
    known = codes >= 0
    if not known.all():
        codes, ranks = codes[known], ranks[known]
    n_class = np.bincount(codes, minlength=len(classes))
    rank_sums = np.bincount(codes, weights=ranks, minlength=len(classes))
    del ranks
    for c, n_pos, rank_sum in zip(classes, n_class, rank_sums, strict=True):
        n_neg = len(xs) - int(n_pos)
        if min(int(n_pos), n_neg) < LEAKAGE_MIN_CLASS_ROWS:
            continue
        auc = float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        if max(auc, 1 - auc) >= LEAKAGE_AUC:
            found.append(f"rank AUC {max(auc, 1 - auc):.4f} for target={c}")
    majority = float(n_class.max() / n_class.sum())
    if majority < LEAKAGE_PURITY:
        accuracy = one_feature_tree(xs, codes, "classification")
        if accuracy >= LEAKAGE_PURITY and 1 - accuracy <= LEAKAGE_ERROR_SHARE * (1 - majority):
            found.append(
                f"a one-feature tree of depth {LEAKAGE_TREE_DEPTH['classification']} is right "
                f"on {accuracy:.1%} of rows (majority class {majority:.1%})"
            )
    return found


def _category_purity(x: pd.Series, codes: np.ndarray, n_classes: int) -> tuple[int, float]:
    """Distinct values of a category feature, and the share of rows whose target the
    majority class of their value gets right (rows with a missing value left out)."""
    values, _ = pd.factorize(x)
    values = np.asarray(values)
    present = values >= 0
    n_values = int(values.max()) + 1 if present.any() else 0
    both = present & (codes >= 0)
    pairs = np.bincount(values[both] * n_classes + codes[both], minlength=n_values * n_classes)
    counts = pairs.reshape(n_values, n_classes)
    rows = counts.sum(axis=1)
    purity = np.divide(counts.max(axis=1), rows, out=np.zeros(n_values), where=rows > 0)
    weights = np.bincount(values[present], minlength=n_values) / max(int(present.sum()), 1)
    return n_values, float((purity * weights).sum())


def leakage_findings(frame: pd.DataFrame, spec: ProjectSpec) -> list[str]:
    """Features that give the target away: declared non-features, or features that on their
    own predict the target (near-)perfectly (see the LEAKAGE_* thresholds)."""
    expected = {name for name, _ in layout(spec)} | {spec.target}
    findings = [
        f"column {c!r} is not a declared feature (target, id or excluded column leaked in)"
        for c in frame.columns
        if c not in expected
    ]
    y = frame[spec.target]
    if len(frame) < 20 or y.nunique() < 2:
        return findings
    # each class as a small integer once, instead of comparing text per feature
    codes, classes = pd.factorize(y, sort=True)
    codes = np.asarray(codes)
    target = y.to_numpy(dtype=np.float64) if spec.task == "regression" else None
    counts = np.bincount(codes[codes >= 0], minlength=len(classes))
    majority = counts.max() / counts.sum()

    def finding(feature: tuple[str, FeatureKind]) -> str | None:
        name, kind = feature
        if kind == "numeric":
            found = _numeric_leak(frame[name], codes, np.asarray(classes), target)
            if found:
                return (
                    f"feature {name!r} alone predicts the target: {'; '.join(found)}. "
                    "If it is derived from the target or known only afterwards, add it to "
                    "features.exclude"
                )
        elif spec.task != "regression" and majority < LEAKAGE_PURITY:
            n_values, score = _category_purity(frame[name], codes, len(classes))
            if n_values > 1 and score >= LEAKAGE_PURITY:
                return f"feature {name!r} determines the target in {score:.1%} of rows"
        return None

    # one feature per column thread (the sorts release the GIL), findings in layout order
    findings += [f for f in column_map(finding, layout(spec)) if f is not None]
    return findings


def _numeric_leak(
    x: pd.Series, codes: np.ndarray, classes: np.ndarray, target: np.ndarray | None
) -> list[str]:
    """Why one numeric feature gives the target away (rows where it is missing left out)."""
    xs = x.to_numpy()  # float32 features stay float32: no copy of the column
    xs = xs if xs.dtype.kind == "f" else xs.astype(np.float64)
    ok = ~np.isnan(xs)
    if ok.sum() < 20 or np.nanmin(xs) == np.nanmax(xs):  # constant: nothing to find
        return []
    rows = slice(None) if ok.all() else ok  # a view, not a copy, when none is missing
    if target is not None:
        return _regression_leak(xs[rows], target[rows])
    return _class_leak(xs[rows], codes[rows], classes)


def partial_period(rows: int, window: dict[str, int], share: float) -> str | None:
    """Why a partition looks like a partial period: fewer rows than ``share`` of the median row
    count of the partitions before it (``window``: key -> rows); None when it does not."""
    if not window:
        return None
    median = float(np.median(list(window.values())))
    if rows >= share * median:
        return None
    return (
        f"{rows} rows, {rows / median:.0%} of the median {median:g} of the {len(window)} "
        f"partitions before it (below quality.partial_period_share={share}): a partial period? "
        "Check the landing file is complete before training on it or using it as a holdout"
    )


def empty_features(frame: pd.DataFrame, spec: ProjectSpec) -> list[str]:
    """Features with no value at all in this partition."""
    out = []
    for name, kind in layout(spec):
        col = frame[name]
        empty = (col == MISSING_CATEGORY).all() if kind == "category" else col.isna().all()
        if empty:
            out.append(name)
    return out
