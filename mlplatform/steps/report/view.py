"""What the report template shows, computed from an EvaluationResult: ordered models, formatted
values, table rows and figures. Plain text only; the template escapes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlplatform.spec import CLASSIFICATION_METRICS, LOWER_IS_BETTER, REGRESSION_METRICS
from mlplatform.steps.evaluate import BASELINE, PRODUCTION, EvaluationResult
from mlplatform.steps.gates import best_baseline
from mlplatform.steps.report import plots
from mlplatform.steps.report.formatting import (
    DASH,
    direction,
    fmt,
    fmt_int,
    gate_bound,
    items,
    number,
)
from mlplatform.steps.report.plots import Plot

Manifests = Mapping[str, Mapping[str, object]]


@dataclass
class Model:
    """A model's column header: its name and tags."""

    name: str
    production: bool
    winner: bool
    baseline: bool
    flagged: str | None  # the notes, when the evaluation flagged it


@dataclass
class Cell:
    text: str
    best: bool = False


@dataclass
class Report:
    title: str
    result: EvaluationResult
    direction: str
    models: list[Model]
    production: dict[str, Any] | None
    best_baseline: dict[str, str] | None
    metric_rows: list[dict[str, Any]]
    gate_rows: list[dict[str, str]]
    plots: list[dict[str, Any]] = field(default_factory=list)
    slice_rows: list[dict[str, Any]] = field(default_factory=list)
    training_rows: list[dict[str, str]] = field(default_factory=list)
    search_rows: list[dict[str, str]] = field(default_factory=list)
    learning: list[Plot] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


def ordered(result: EvaluationResult) -> list[str]:
    """Model names: production first, then the candidates, then the baselines."""
    names = [n for n in result.models if result.models[n].kind != BASELINE and n != PRODUCTION]
    base = [n for n in result.models if result.models[n].kind == BASELINE]
    return [PRODUCTION] * (PRODUCTION in result.models) + names + base


def metric_names(result: EvaluationResult) -> list[str]:
    """Primary metric first, then the known metrics in spec order, then any others sorted."""
    present: set[str] = set()
    for scores in result.models.values():
        present.update(scores.metrics)
    known = REGRESSION_METRICS if result.task == "regression" else CLASSIFICATION_METRICS
    out = [result.primary_metric] if result.primary_metric in present else []
    out += [m for m in known if m in present and m not in out]
    out += sorted(present - set(out))
    return out


def best(values: Sequence[float | None], metric: str) -> set[int]:
    """Indices of the best finite values (ties included); empty with fewer than two models."""
    finite = [v for v in values if v is not None]
    if len(values) < 2 or not finite:
        return set()
    target = min(finite) if metric in LOWER_IS_BETTER else max(finite)
    return {i for i, v in enumerate(values) if v is not None and v == target}


def _model(name: str, result: EvaluationResult) -> Model:
    scores = result.models.get(name)
    baseline = scores is not None and scores.kind == BASELINE
    notes = "; ".join(scores.notes) if scores is not None and scores.notes else None
    return Model(name, name == PRODUCTION, name == result.winner, baseline, notes)


def _production(result: EvaluationResult) -> dict[str, Any] | None:
    prod = result.production
    if prod is None:
        return None
    text = prod.note
    if not prod.comparable and prod.bundle_id:
        text += "; evaluation.max_regression does not apply"
    return {"id": prod.bundle_id[:12] if prod.bundle_id else "", "text": text}


def _best_baseline(result: EvaluationResult) -> dict[str, str] | None:
    baselines = {n: s.metrics for n, s in result.models.items() if s.kind == BASELINE}
    found = best_baseline(baselines, result.primary_metric)
    return None if found is None else {"name": found[0], "value": fmt(found[1])}


def _metric_rows(result: EvaluationResult, names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for metric in metric_names(result):
        values = [number(result.models[n].metrics.get(metric)) for n in names]
        top = best(values, metric)
        rows.append(
            {
                "metric": metric,
                "direction": direction(metric),
                "lower": metric in LOWER_IS_BETTER,
                "cells": [Cell(fmt(v), i in top) for i, v in enumerate(values)],
            }
        )
    return rows


def _gate_rows(result: EvaluationResult, names: list[str]) -> list[dict[str, str]]:
    return [
        {
            "model": name,
            "metric": g.metric,
            "value": fmt(g.value),
            "bound": gate_bound(g),
            "verdict": "pass" if g.passed else "fail",
        }
        for name in names
        for g in result.models[name].gates
    ]


def _classification_plots(result: EvaluationResult, names: list[str]) -> list[dict[str, Any]]:
    """Sections of figures: the confusion matrices, then ROC/PR per class."""
    sections: list[dict[str, Any]] = []
    cms = []
    for name in names:
        confusion = result.models[name].confusion
        plot = plots.confusion_matrix(name, confusion) if confusion else None
        if plot:
            cms.append(plot)
    if cms:
        sections.append({"heading": "Confusion matrices", "class": None, "figures": cms})
    classes: list[str] = []
    for name in names:
        classes += [c for c in result.models[name].curves if c not in classes]
    if classes:
        sections.append(
            {"heading": "ROC and precision-recall curves", "class": None, "figures": []}
        )
    for cls in classes:
        sections.append(
            {"heading": None, "class": cls, "figures": plots.roc_and_pr(result, names, cls)}
        )
    return sections


def _slice_rows(result: EvaluationResult, names: list[str]) -> list[dict[str, Any]]:
    keys: list[str] = []
    for name in names:
        keys += [k for k in result.models[name].slices if k not in keys]
    rows = []
    for key in sorted(keys):
        cells = []
        for name in names:
            s = result.models[name].slices.get(key) or {}
            cells += [fmt_int(s.get("rows")), fmt(s.get(result.primary_metric))]
        rows.append({"key": key, "cells": cells})
    return rows


def _manifest_order(manifests: Manifests, names: list[str]) -> list[str]:
    return [n for n in names if n in manifests] + [n for n in manifests if n not in names]


def _training_rows(manifests: Manifests, names: list[str]) -> list[dict[str, str]]:
    rows = []
    for name in _manifest_order(manifests, names):
        m = manifests[name] or {}
        parts = sorted(str(p) for p in items(m.get("partitions")))
        span = DASH if not parts else parts[0] if len(parts) == 1 else f"{parts[0]} – {parts[-1]}"
        counts = m.get("rows")
        total: float | None = None
        if isinstance(counts, Mapping):
            nums = [v for v in (number(c) for c in counts.values()) if v is not None]
            total = sum(nums) if nums else None
        rows.append({"model": name, "span": span, "count": str(len(parts)), "rows": fmt_int(total)})
    return rows


def _search_rows(manifests: Manifests, names: list[str]) -> list[dict[str, str]]:
    """One row per model tuned by a hyperparameter search: trials, best value, chosen params."""
    rows = []
    for name in _manifest_order(manifests, names):
        found = (manifests[name] or {}).get("search")
        if not isinstance(found, Mapping):
            continue
        chosen = found.get("best_params")
        params = (
            ", ".join(f"{k}={v}" for k, v in chosen.items()) if isinstance(chosen, Mapping) else ""
        )
        rows.append(
            {
                "model": name,
                "metric": str(found.get("metric")),
                "best": fmt(found.get("best_value")),
                "complete": fmt_int(found.get("complete")),
                "pruned": fmt_int(found.get("pruned")),
                "failed": fmt_int(found.get("failed")),
                "resumed": fmt_int(found.get("resumed_from")),
                "params": params,
            }
        )
    return rows


def build(
    result: EvaluationResult,
    project: str,
    training_manifests: Manifests | None,
    extra: Mapping[str, str] | None,
) -> Report:
    names = ordered(result)
    report = Report(
        title=f"{project} — evaluation for cutoff {result.cutoff}",
        result=result,
        direction=direction(result.primary_metric),
        models=[_model(n, result) for n in names],
        production=_production(result),
        best_baseline=_best_baseline(result),
        metric_rows=_metric_rows(result, names),
        gate_rows=_gate_rows(result, names),
        slice_rows=_slice_rows(result, names),
        extra=dict(extra or {}),
    )
    plotted = [n for n in names if result.models[n].kind != BASELINE]
    if result.task == "regression":
        figures = plots.predicted_vs_actual(result, plotted)
        if figures:
            report.plots = [{"heading": "Predicted vs actual", "class": None, "figures": figures}]
    else:
        report.plots = _classification_plots(result, plotted)
    if training_manifests:
        report.training_rows = _training_rows(training_manifests, names)
        report.search_rows = _search_rows(training_manifests, names)
        order = _manifest_order(training_manifests, names)
        report.learning = [
            p for n in order if (p := plots.learning_curve(n, training_manifests[n] or {}))
        ]
    return report
