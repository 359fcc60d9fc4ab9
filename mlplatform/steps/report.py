"""Render an EvaluationResult as one self-contained HTML file (inline CSS, inline PNG plots)."""

from __future__ import annotations

import base64
import html
import io
import math
import os
import pathlib
import tempfile
from collections.abc import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from mlplatform.spec import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    REGRESSION_METRICS,
)
from mlplatform.steps.evaluate import (
    BASELINE,
    PRODUCTION,
    EvaluationResult,
    GateResult,
    ModelScores,
    best_baseline,
)

DASH = "—"
IMG_PREFIX = '<img src="data:image/png;base64,'
_DPI = 80
_MAX_ANNOTATED_CLASSES = 20

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2328}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}
th{background:#f6f8fa}td.l,th.l{text-align:left}
td.best{background:#dafbe1;font-weight:bold}
td.pass{color:#1a7f37;font-weight:bold}td.fail{color:#cf222e;font-weight:bold}
.tag{font-size:.75em;font-weight:normal;padding:1px 5px;border-radius:8px;
background:#ddf4ff;color:#0969da;margin-left:4px}
.tag.win{background:#dafbe1;color:#1a7f37}
.tag.base{background:#eaeef2;color:#59636e}.tag.flag{background:#ffebe9;color:#cf222e}
.summary{background:#f6f8fa;padding:8px 12px;border-radius:6px}
.plots{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figcaption{font-size:.85em;text-align:center}
footer{margin-top:2em;font-size:.85em;color:#59636e}
"""


def _e(value: object) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def _num(value: object) -> float | None:
    """A finite float, or None for None / NaN / inf / non-numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _fmt(value: object) -> str:
    """Metric value as text: 4 decimals, '—' when missing or not finite."""
    v = _num(value)
    if v is None:
        return DASH
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.4g}"
    return f"{v:.4f}"


def _fmt_int(value: object) -> str:
    """Row counts as grouped integers, '—' when missing."""
    v = _num(value)
    return DASH if v is None else f"{round(v):,}"


def _items(value: object) -> Iterable[object]:
    """A JSON array's items; none for a missing (falsy) value."""
    if not value:
        return ()
    if not isinstance(value, Iterable):
        raise TypeError(f"{type(value).__name__!r} object is not iterable")
    return value


def _plain(text: object) -> str:
    """Text safe for matplotlib labels (no mathtext)."""
    return str(text).replace("$", r"\$")


def _floats(values: Iterable[object] | None) -> np.ndarray:
    """A float array; None and non-numbers become NaN."""
    if values is None:
        return np.empty(0)
    return np.array([np.nan if (f := _num(v)) is None else f for v in values], dtype=float)


def _ordered(result: EvaluationResult) -> list[str]:
    """Model names: production first, then the candidates, then the baselines."""
    names = [n for n in result.models if result.models[n].kind != BASELINE and n != PRODUCTION]
    base = [n for n in result.models if result.models[n].kind == BASELINE]
    return [PRODUCTION] * (PRODUCTION in result.models) + names + base


def _metric_names(result: EvaluationResult) -> list[str]:
    """Primary metric first, then the known metrics in spec order, then any others sorted."""
    present: set[str] = set()
    for scores in result.models.values():
        present.update(scores.metrics)
    known = REGRESSION_METRICS if result.task == "regression" else CLASSIFICATION_METRICS
    out = [result.primary_metric] if result.primary_metric in present else []
    out += [m for m in known if m in present and m not in out]
    out += sorted(present - set(out))
    return out


def _direction(metric: str) -> str:
    return "lower is better" if metric in LOWER_IS_BETTER else "higher is better"


def _model_header(name: str, result: EvaluationResult) -> str:
    tags = ""
    if name == PRODUCTION:
        tags += ' <span class="tag">current production</span>'
    if name == result.winner:
        tags += ' <span class="tag win">winner</span>'
    scores = result.models.get(name)
    if scores is not None and scores.kind == BASELINE:
        tags += ' <span class="tag base">baseline</span>'
    if scores is not None and scores.notes:
        tags += f' <span class="tag flag" title="{_e("; ".join(scores.notes))}">flagged</span>'
    return f"{_e(name)}{tags}"


def _png(fig: plt.Figure) -> str:
    """Encode a figure as an inline <img> data URI and close it."""
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(data: str, caption: str) -> str:
    return (
        f'<figure>{IMG_PREFIX}{data}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


# ---------------------------------------------------------------------------- sections


def _summary(result: EvaluationResult) -> str:
    parts = [
        f"<b>Task:</b> {_e(result.task)}",
        f"<b>Holdout rows:</b> {_e(_fmt_int(result.holdout_rows))}",
        f"<b>Primary metric:</b> {_e(result.primary_metric)} "
        f"({_e(_direction(result.primary_metric))})",
    ]
    if result.winner is not None:
        parts.append(f'<b>Winner:</b> <span class="winner">{_e(result.winner)}</span>')
    else:
        parts.append('<b class="nowinner">No candidate qualifies</b>')
    out = '<p class="summary">' + " &middot; ".join(parts) + "</p>"
    out += _comparisons(result)
    if result.reasons:
        items = "".join(f"<li>{_e(r)}</li>" for r in result.reasons)
        out += f'<p>Reasons:</p><ul class="reasons">{items}</ul>'
    return out


def _comparisons(result: EvaluationResult) -> str:
    """Production's place in this evaluation and the best baseline on the primary metric."""
    items = []
    prod = result.production
    if prod is not None:
        ident = f"<code>{_e(prod.bundle_id[:12])}</code> " if prod.bundle_id else ""
        text = _e(prod.note)
        if not prod.comparable and prod.bundle_id:
            text += "; evaluation.max_regression does not apply"
        items.append(f'<li id="production-entry"><b>Production:</b> {ident}{text}</li>')
    metric = result.primary_metric
    baselines = {n: s.metrics for n, s in result.models.items() if s.kind == BASELINE}
    best = best_baseline(baselines, metric)
    if best is not None:
        items.append(
            f'<li id="best-baseline"><b>Best baseline:</b> {_e(best[0])} {_e(metric)} '
            f"{_e(_fmt(best[1]))} (baselines are fitted on the training window only and "
            "never win)</li>"
        )
    return f'<ul class="comparisons">{"".join(items)}</ul>' if items else ""


def _best(values: Sequence[float | None], metric: str) -> set[int]:
    """Indices of the best finite values (ties included); empty with fewer than two models."""
    finite = [v for v in values if v is not None]
    if len(values) < 2 or not finite:
        return set()
    target = min(finite) if metric in LOWER_IS_BETTER else max(finite)
    return {i for i, v in enumerate(values) if v is not None and v == target}


def _metrics_table(result: EvaluationResult, names: list[str]) -> str:
    head = '<th class="l">Metric</th>' + "".join(
        f"<th>{_model_header(n, result)}</th>" for n in names
    )
    rows = []
    for metric in _metric_names(result):
        values = [_num(result.models[n].metrics.get(metric)) for n in names]
        best = _best(values, metric)
        arrow = "&darr;" if metric in LOWER_IS_BETTER else "&uarr;"
        cells = "".join(
            ('<td class="best">' if i in best else "<td>") + f"{_e(_fmt(v))}</td>"
            for i, v in enumerate(values)
        )
        rows.append(
            f'<tr><td class="l" title="{_e(_direction(metric))}">{_e(metric)} {arrow}</td>'
            f"{cells}</tr>"
        )
    return (
        '<h2>Metrics</h2><table id="metrics"><thead><tr>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _bound(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"[{_fmt(lo)}, {_fmt(hi)}]"
    if lo is not None:
        return f"≥ {_fmt(lo)}"
    if hi is not None:
        return f"≤ {_fmt(hi)}"
    return DASH


def _gate_bound(g: GateResult) -> str:
    """Absolute bounds and, for a relative gate, the lift needed over the best baseline."""
    parts = [_bound(g.min, g.max)] if g.min is not None or g.max is not None else []
    if g.min_lift is not None or g.beat_baseline:
        need = f"lift ≥ {_fmt(g.min_lift)}" if g.min_lift is not None else ""
        need += (" and " if need else "") + "lift > 0" if g.beat_baseline else ""
        if g.baseline is None:
            parts.append(f"{need} (no baseline)")
        else:
            parts.append(
                f"{need} over {g.baseline} ({_fmt(g.baseline_value)}): lift {_fmt(g.lift)}"
            )
    return "; ".join(parts) or DASH


def _gates_table(result: EvaluationResult, names: list[str]) -> str:
    rows = []
    for name in names:
        for g in result.models[name].gates:
            verdict = "pass" if g.passed else "fail"
            rows.append(
                f'<tr><td class="l">{_e(name)}</td><td class="l">{_e(g.metric)}</td>'
                f"<td>{_e(_fmt(g.value))}</td><td>{_e(_gate_bound(g))}</td>"
                f'<td class="{verdict}">{verdict}</td></tr>'
            )
    if not rows:
        return "<h2>Gates</h2><p>No gates configured.</p>"
    head = "".join(
        f'<th class="l">{h}</th>' if h in ("Model", "Metric") else f"<th>{h}</th>"
        for h in ("Model", "Metric", "Value", "Bound", "Result")
    )
    return (
        f'<h2>Gates</h2><table id="gates"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _confusion_plot(name: str, confusion: Mapping[str, object]) -> str | None:
    labels = [str(v) for v in _items(confusion.get("labels"))]
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
    return _figure(_png(fig), f"Confusion matrix: {name}")


def _curve_plots(result: EvaluationResult, names: list[str], cls: str) -> str:
    roc_fig, roc = plt.subplots(figsize=(4, 3.4))
    pr_fig, pr = plt.subplots(figsize=(4, 3.4))
    roc.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1)
    for name in names:
        curve = result.models[name].curves.get(cls)
        if not curve:
            continue
        label = _plain(name)
        roc.plot(_floats(curve.get("fpr")), _floats(curve.get("tpr")), label=label)
        pr.plot(_floats(curve.get("recall")), _floats(curve.get("precision")), label=label)
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
    return _figure(_png(roc_fig), f"ROC, class {cls}") + _figure(
        _png(pr_fig), f"Precision-recall, class {cls}"
    )


def _classification_plots(result: EvaluationResult, names: list[str]) -> str:
    out = []
    cms = []
    for name in names:
        confusion = result.models[name].confusion
        img = _confusion_plot(name, confusion) if confusion else None
        if img:
            cms.append(img)
    if cms:
        out.append(f'<h2>Confusion matrices</h2><div class="plots">{"".join(cms)}</div>')
    classes: list[str] = []
    for name in names:
        classes += [c for c in result.models[name].curves if c not in classes]
    if classes:
        out.append("<h2>ROC and precision-recall curves</h2>")
    for cls in classes:
        out.append(
            f'<h3>Class {_e(cls)}</h3><div class="plots">{_curve_plots(result, names, cls)}</div>'
        )
    return "".join(out)


def _residual_data(scores: ModelScores) -> tuple[np.ndarray, np.ndarray] | None:
    if not scores.residuals:
        return None
    actual = _floats(scores.residuals.get("actual"))
    predicted = _floats(scores.residuals.get("predicted"))
    n = min(len(actual), len(predicted))
    if n == 0:
        return None
    return actual[:n], predicted[:n]


def _regression_plots(result: EvaluationResult, names: list[str]) -> str:
    data = {n: d for n in names if (d := _residual_data(result.models[n])) is not None}
    if not data:
        return ""
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
        figs.append(_figure(_png(fig), f"Predicted vs actual: {name}"))
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
    figs.append(_figure(_png(fig), "Residual histogram"))
    return f'<h2>Predicted vs actual</h2><div class="plots">{"".join(figs)}</div>'


def _slices_table(result: EvaluationResult, names: list[str]) -> str:
    keys: list[str] = []
    for name in names:
        keys += [k for k in result.models[name].slices if k not in keys]
    if not keys:
        return ""
    metric = result.primary_metric
    top = '<th class="l" rowspan="2">Slice</th>' + "".join(
        f'<th colspan="2">{_model_header(n, result)}</th>' for n in names
    )
    sub = "".join(f"<th>rows</th><th>{_e(metric)}</th>" for _ in names)
    rows = []
    for key in sorted(keys):
        cells = ""
        for name in names:
            s = result.models[name].slices.get(key) or {}
            cells += f"<td>{_e(_fmt_int(s.get('rows')))}</td><td>{_e(_fmt(s.get(metric)))}</td>"
        rows.append(f'<tr><td class="l">{_e(key)}</td>{cells}</tr>')
    return (
        f'<h2>Per-slice {_e(metric)}</h2><table id="slices"><thead><tr>{top}</tr>'
        f"<tr>{sub}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _training_table(manifests: Mapping[str, Mapping[str, object]], names: list[str]) -> str:
    order = [n for n in names if n in manifests] + [n for n in manifests if n not in names]
    rows = []
    for name in order:
        m = manifests[name] or {}
        parts = sorted(str(p) for p in _items(m.get("partitions")))
        span = DASH if not parts else parts[0] if len(parts) == 1 else f"{parts[0]} – {parts[-1]}"
        counts = m.get("rows")
        total: float | None = None
        if isinstance(counts, Mapping):
            nums = [v for v in (_num(c) for c in counts.values()) if v is not None]
            total = sum(nums) if nums else None
        rows.append(
            f'<tr><td class="l">{_e(name)}</td><td class="l">{_e(span)}</td>'
            f"<td>{len(parts)}</td><td>{_e(_fmt_int(total))}</td></tr>"
        )
    return (
        '<h2>Training data</h2><table id="training"><thead><tr><th class="l">Model</th>'
        '<th class="l">Partitions</th><th>Count</th><th>Total rows</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _search_table(manifests: Mapping[str, Mapping[str, object]], names: list[str]) -> str:
    """One row per model tuned by a hyperparameter search: trials, best value, chosen params."""
    order = [n for n in names if n in manifests] + [n for n in manifests if n not in names]
    rows = []
    for name in order:
        found = (manifests[name] or {}).get("search")
        if not isinstance(found, Mapping):
            continue
        best = found.get("best_params")
        params = ", ".join(f"{k}={v}" for k, v in best.items()) if isinstance(best, Mapping) else ""
        rows.append(
            f'<tr><td class="l">{_e(name)}</td><td class="l">{_e(found.get("metric"))}</td>'
            f"<td>{_e(_fmt(found.get('best_value')))}</td>"
            f"<td>{_e(_fmt_int(found.get('complete')))}</td>"
            f"<td>{_e(_fmt_int(found.get('pruned')))}</td>"
            f"<td>{_e(_fmt_int(found.get('failed')))}</td>"
            f"<td>{_e(_fmt_int(found.get('resumed_from')))}</td>"
            f'<td class="l">{_e(params)}</td></tr>'
        )
    if not rows:
        return ""
    return (
        "<h2>Hyperparameter search</h2><p>Trials are scored on the last rows of the training "
        'window, never on the holdout.</p><table id="search"><thead><tr><th class="l">Model</th>'
        '<th class="l">Metric</th><th>Best</th><th>Complete</th><th>Pruned</th><th>Failed</th>'
        '<th>Resumed</th><th class="l">Chosen params</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _learning_curve(name: str, manifest: Mapping[str, object]) -> str | None:
    """Train and validation loss per epoch of an iterative trainer, best epoch marked."""
    history = manifest.get("history")
    if not isinstance(history, list) or not history:
        return None
    logs = [h for h in history if isinstance(h, Mapping)]
    epochs = _floats(h.get("epoch") for h in logs)
    train = _floats(h.get("train_loss") for h in logs)
    val = _floats(h.get("val_loss") for h in logs)
    if not np.isfinite(epochs).any():
        return None
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    ax.plot(epochs, train, marker=".", label="train loss")
    ax.plot(epochs, val, marker=".", label="validation loss")
    best = _num(manifest.get("best_epoch"))
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
    return _figure(_png(fig), caption)


def _learning_curves(manifests: Mapping[str, Mapping[str, object]], names: list[str]) -> str:
    order = [n for n in names if n in manifests] + [n for n in manifests if n not in names]
    figs = [f for n in order if (f := _learning_curve(n, manifests[n] or {})) is not None]
    if not figs:
        return ""
    return f'<h2>Learning curves</h2><div class="plots" id="learning">{"".join(figs)}</div>'


def _footer(extra: Mapping[str, str]) -> str:
    rows = "".join(
        f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>' for k, v in extra.items()
    )
    return f'<footer><table id="extra"><tbody>{rows}</tbody></table></footer>'


# ---------------------------------------------------------------------------- public API


def render_report(
    result: EvaluationResult,
    *,
    project: str,
    training_manifests: dict[str, dict] | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """The evaluation report as one self-contained HTML document."""
    names = _ordered(result)
    title = f"{project} — evaluation for cutoff {result.cutoff}"
    body = [f"<h1>{_e(title)}</h1>", _summary(result)]
    body.append(_metrics_table(result, names))
    body.append(_gates_table(result, names))
    plotted = [n for n in names if result.models[n].kind != BASELINE]
    if result.task == "regression":
        body.append(_regression_plots(result, plotted))
    else:
        body.append(_classification_plots(result, plotted))
    body.append(_slices_table(result, names))
    if training_manifests:
        body.append(_training_table(training_manifests, names))
        body.append(_search_table(training_manifests, names))
        body.append(_learning_curves(training_manifests, names))
    if extra:
        body.append(_footer(extra))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def write_report(html: str, path: pathlib.Path) -> pathlib.Path:
    """Write the report atomically (temp file in the same folder, then os.replace)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path
