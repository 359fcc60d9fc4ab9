"""The report's figures, drawn with matplotlib (Agg) and encoded as base64 PNG."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from mlplatform.steps.evaluate import EvaluationResult, ModelScores
from mlplatform.steps.report.formatting import items, number

_DPI = 80
_MAX_ANNOTATED_CLASSES = 20


class Plot(NamedTuple):
    """One figure: base64 PNG data and its caption."""

    data: str
    caption: str


def _plain(text: object) -> str:
    """Text safe for matplotlib labels (no mathtext)."""
    return str(text).replace("$", r"\$")


def floats(values: Iterable[object] | None) -> np.ndarray:
    """A float array; None and non-numbers become NaN."""
    if values is None:
        return np.empty(0)
    return np.array([np.nan if (f := number(v)) is None else f for v in values], dtype=float)


def _png(fig: plt.Figure) -> str:
    """Encode a figure as base64 PNG and close it."""
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def confusion_matrix(name: str, confusion: Mapping[str, object]) -> Plot | None:
    labels = [str(v) for v in items(confusion.get("labels"))]
    matrix = np.asarray(confusion.get("matrix") or [], dtype=float)
    if not labels or matrix.ndim != 2 or matrix.shape != (len(labels), len(labels)):
        return None
    size = 2.4 + 0.35 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 0.6, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(labels))
    ax.set_xticks(ticks, [_plain(lbl) for lbl in labels], rotation=45, ha="right")
    ax.set_yticks(ticks, [_plain(lbl) for lbl in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(_plain(name))
    if len(labels) <= _MAX_ANNOTATED_CLASSES:
        top = matrix.max() if matrix.size else 0.0
        for i in ticks:
            for j in ticks:
                color = "white" if top and matrix[i, j] > top / 2 else "black"
                ax.text(j, i, f"{int(matrix[i, j]):d}", ha="center", va="center", color=color)
    fig.tight_layout()
    return Plot(_png(fig), f"Confusion matrix: {name}")


def roc_and_pr(result: EvaluationResult, names: list[str], cls: str) -> list[Plot]:
    """ROC and precision-recall curves of one class, one line per model."""
    roc_fig, roc = plt.subplots(figsize=(4, 3.4))
    pr_fig, pr = plt.subplots(figsize=(4, 3.4))
    roc.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1)
    for name in names:
        curve = result.models[name].curves.get(cls)
        if not curve:
            continue
        label = _plain(name)
        roc.plot(floats(curve.get("fpr")), floats(curve.get("tpr")), label=label)
        pr.plot(floats(curve.get("recall")), floats(curve.get("precision")), label=label)
    for ax, title, xl, yl in (
        (roc, "ROC", "false positive rate", "true positive rate"),
        (pr, "Precision-recall", "recall", "precision"),
    ):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(f"{title}: {_plain(cls)}")
        ax.legend(loc="lower right" if ax is roc else "lower left", fontsize="small")
    roc_fig.tight_layout()
    pr_fig.tight_layout()
    return [
        Plot(_png(roc_fig), f"ROC, class {cls}"),
        Plot(_png(pr_fig), f"Precision-recall, class {cls}"),
    ]


def _residual_data(scores: ModelScores) -> tuple[np.ndarray, np.ndarray] | None:
    if not scores.residuals:
        return None
    actual = floats(scores.residuals.get("actual"))
    predicted = floats(scores.residuals.get("predicted"))
    n = min(len(actual), len(predicted))
    if n == 0:
        return None
    return actual[:n], predicted[:n]


def predicted_vs_actual(result: EvaluationResult, names: list[str]) -> list[Plot]:
    """A scatter per model with residuals, then one pooled residual histogram (none if no
    model has residuals)."""
    data = {n: d for n in names if (d := _residual_data(result.models[n])) is not None}
    if not data:
        return []
    figs = []
    for name, (actual, predicted) in data.items():
        fig, ax = plt.subplots(figsize=(4, 3.6))
        ax.scatter(actual, predicted, s=6, alpha=0.5)
        both = np.concatenate([actual, predicted])
        both = both[np.isfinite(both)]
        if both.size:
            lo, hi = float(both.min()), float(both.max())
            ax.plot([lo, hi], [lo, hi], color="#cf222e", linewidth=1)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        ax.set_title(_plain(name))
        fig.tight_layout()
        figs.append(Plot(_png(fig), f"Predicted vs actual: {name}"))
    fig, ax = plt.subplots(figsize=(5, 3.6))
    resids = {n: p - a for n, (a, p) in data.items()}
    resids = {n: r[np.isfinite(r)] for n, r in resids.items()}
    pooled = np.concatenate(list(resids.values()))
    if pooled.size:
        bins = np.histogram_bin_edges(pooled, bins=30)
        for name, resid in resids.items():
            if resid.size:
                # matplotlib's stub says Sequence[float]; it takes any array-like (as numpy does)
                ax.hist(resid, bins=bins, alpha=0.5, label=_plain(name))  # type: ignore[arg-type]
    ax.set_xlabel("predicted - actual")
    ax.set_ylabel("rows")
    ax.set_title("Residuals")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    figs.append(Plot(_png(fig), "Residual histogram"))
    return figs


def learning_curve(name: str, manifest: Mapping[str, object]) -> Plot | None:
    """Train and validation loss per epoch of an iterative trainer, best epoch marked."""
    history = manifest.get("history")
    if not isinstance(history, list) or not history:
        return None
    logs = [h for h in history if isinstance(h, Mapping)]
    epochs = floats(h.get("epoch") for h in logs)
    train = floats(h.get("train_loss") for h in logs)
    val = floats(h.get("val_loss") for h in logs)
    if not np.isfinite(epochs).any():
        return None
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    ax.plot(epochs, train, marker=".", label="train loss")
    ax.plot(epochs, val, marker=".", label="validation loss")
    best = number(manifest.get("best_epoch"))
    caption = f"Learning curve: {name}"
    if best is not None:
        ax.axvline(best, color="#1a7f37", linestyle="--", linewidth=1, label=f"best epoch {best:g}")
        at = np.flatnonzero(epochs == best)
        if at.size:
            ax.plot([best], [val[at[0]]], marker="o", color="#1a7f37")
        caption += f" (best epoch {best:g} of {len(logs)})"
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(_plain(name))
    ax.legend(fontsize="small")
    fig.tight_layout()
    return Plot(_png(fig), caption)
